"""python -m fastgan.kernels.report: compile every kernel for sm_80 and sm_90 (no GPU needed) and print, per
kernel specialisation and target, registers per thread, spill bytes and the widths of its global loads/stores.

Examples:
    python -m fastgan.kernels.report                 # every kernel, fp32/fp16/bf16, sm_80 and sm_90
    python -m fastgan.kernels.report --dtype bf16 --capability 90
"""

from __future__ import annotations

import argparse
import sys

from fastgan.kernels.aot import CAPABILITIES, all_builds, compile_build, resource_usage


def _widths(counts: dict[str, int]) -> str:
    return " ".join(f"{width}×{count}" for width, count in sorted(counts.items())) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastgan.kernels.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), help="only builds for this activation dtype")
    parser.add_argument("--capability", type=int, choices=CAPABILITIES, help="only this target")
    args = parser.parse_args(argv)
    rows = []
    spilled = False
    for build in all_builds():
        if args.dtype and not build.label.startswith(args.dtype):
            continue
        for capability in [args.capability] if args.capability else CAPABILITIES:
            usage = resource_usage(compile_build(build, capability), capability)
            spills = usage.spill_store_bytes + usage.spill_load_bytes
            spilled |= spills > 0
            rows.append(
                (
                    build.name,
                    build.label,
                    f"sm_{capability}",
                    str(usage.registers),
                    str(spills),
                    _widths(usage.global_loads),
                    _widths(usage.global_stores),
                )
            )
    header = ("kernel", "specialisation", "target", "regs", "spill B", "global loads", "global stores")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 1 if spilled else 0


if __name__ == "__main__":
    sys.exit(main())
