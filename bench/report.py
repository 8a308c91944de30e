"""python -m bench.report BENCH.json [--out bench/results/NAME]: pytest-benchmark JSON -> ratio table and chart.

Pairs each eager result with its fused counterpart measured in the same run and prints one row per op, case and
mode: median times, speed-up (eager / fused), for the training cases also both providers timed alternately in one
case (``interleaved``) and both models compiled by torch.compile (eager model / fused model), the activation bytes
fused keeps as a fraction of eager's, and — on CUDA — achieved GB/s and its fraction of the device's peak.
Upscaling results (bench_upscale.py) get a table of their own: ms, tiles/s and input megapixels/s per backend,
and the cost of tiling + blending as tiled / whole-image time; so do data-loading results (bench_data.py): images/s
or it/s of the torch and DALI loaders and the fraction of a training step spent waiting for data.
With --out it also writes NAME.md (the tables) and NAME.png (bar chart of the ratios).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MODES = {"forward": 0, "backward": 1, "full": 2}
DATA_MODES = {"decode": 0, "batches": 1, "train step": 2}
SEPARATE_TABLES = ("upscale", "data")  # ops with tables of their own, not eager/fused pairs


def _key(result: dict[str, Any]) -> tuple[str, str, str]:
    info = result["extra_info"]
    return info["op"], info["case"], info["mode"]


def recorded(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The results whose case recorded its extra_info; a case that failed after its timing (pytest-benchmark keeps
    its time) is left out with a note on stderr rather than failing the whole report."""
    kept = [result for result in report["benchmarks"] if "op" in result.get("extra_info", {})]
    if report["benchmarks"] and not kept:
        raise KeyError("no result carries fastgan's extra_info")
    for result in report["benchmarks"]:
        if "op" not in result.get("extra_info", {}):
            name = result.get("fullname", result.get("name", "?"))
            print(f"note: {name} recorded no extra_info (did the case fail?): left out", file=sys.stderr)
    return kept


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (op, case, mode) with eager and fused results: times in ms, ratios, bandwidth."""
    by_key: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for result in report["benchmarks"]:
        if result["extra_info"]["op"] not in SEPARATE_TABLES:
            by_key.setdefault(_key(result), {})[result["extra_info"]["provider"]] = result
    table = []
    for (op, case, mode), providers in by_key.items():
        if "eager" not in providers or "fused" not in providers:
            continue
        eager, fused = providers["eager"], providers["fused"]
        eager_ms, fused_ms = eager["stats"]["median"] * 1e3, fused["stats"]["median"] * 1e3
        row = {
            "op": op,
            "case": case,
            "mode": mode,
            "eager_ms": eager_ms,
            "fused_ms": fused_ms,
            "speedup": eager_ms / fused_ms,
        }
        if "saved_bytes" in fused["extra_info"] and "saved_bytes" in eager["extra_info"]:
            row["memory_ratio"] = fused["extra_info"]["saved_bytes"] / max(eager["extra_info"]["saved_bytes"], 1)
        for name in (
            "compiled",
            "compiled-fused",
            "compiled-graphs",
            "compiled-fused-graphs",
            "eager-graphs",
            "fused-graphs",
        ):
            if name in providers:
                row[f"{name.replace('-', '_')}_ms"] = providers[name]["stats"]["median"] * 1e3
        for name in ("interleaved", "interleaved-compiled"):
            interleaved = providers.get(name, {}).get("extra_info", {})
            if "eager_ms" in interleaved and "fused_ms" in interleaved:
                key = name.replace("-", "_")
                row[f"{key}_eager_ms"], row[f"{key}_fused_ms"] = interleaved["eager_ms"], interleaved["fused_ms"]
        for name, result in (("eager", eager), ("fused", fused)):
            if "device_ms" in result["extra_info"]:
                row[f"{name}_device_ms"] = result["extra_info"]["device_ms"]
        info = fused["extra_info"]
        if "minimum_traffic_bytes" in info:
            minimum = info["minimum_traffic_bytes"]
            # the fused traffic model counts the Triton kernels (results before 2026-11-30 carry it for any backend)
            if "traffic_bytes" in info and info.get("fused_backend", "triton") == "triton":
                row["traffic_vs_minimum"] = info["traffic_bytes"] / minimum
            if "traffic_bytes" in eager["extra_info"]:
                row["eager_traffic_vs_minimum"] = eager["extra_info"]["traffic_bytes"] / minimum
        for name in (
            "achieved_gbps",
            "fraction_of_peak",
            "device_achieved_gbps",
            "device_fraction_of_peak",
            "peak_allocated_bytes",
        ):
            if name in info:
                row[name] = info[name]
        if "peak_allocated_bytes" in eager["extra_info"] and "peak_allocated_bytes" in info:
            row["peak_memory_ratio"] = info["peak_allocated_bytes"] / max(
                eager["extra_info"]["peak_allocated_bytes"], 1
            )
        table.append(row)
    return sorted(table, key=lambda row: (row["op"], row["case"], MODES.get(row["mode"], 3)))


def upscale_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per upscale result: backend, case, mode, ms, tiles/s, input MP/s; "tiled" and "blend-only" rows also
    carry their time over the same backend's "whole" time on the same case (the cost of tiling + blending), and
    "interleaved" rows (one tiled and one whole pass a round) the ratio of their medians in that one case."""
    results = [r for r in report["benchmarks"] if r["extra_info"]["op"] == "upscale"]
    whole = {
        (r["extra_info"]["provider"], r["extra_info"]["case"]): r["stats"]["median"]
        for r in results
        if r["extra_info"]["mode"] == "whole"
    }
    table = []
    for result in results:
        info, seconds = result["extra_info"], result["stats"]["median"]
        row = {
            "backend": info["provider"],
            "case": info["case"],
            "mode": info["mode"],
            "ms": seconds * 1e3,
            "tiles_per_s": info["tiles"] / seconds,
            "megapixels_per_s": info["input_pixels"] / seconds / 1e6,
        }
        if "tiled_ms" in info and "whole_ms" in info:  # "interleaved": the two passes alternated in one case
            row["tiled_over_whole"] = info["tiled_ms"] / info["whole_ms"]
        elif info["mode"] != "whole" and (info["provider"], info["case"]) in whole:
            row["tiled_over_whole"] = seconds / whole[info["provider"], info["case"]]
        table.append(row)
    return sorted(table, key=lambda row: (row["case"], row["backend"], row["mode"]))


def upscale_markdown(report: dict[str, Any]) -> str:
    lines = [
        "| backend | case | mode | ms | tiles/s | input MP/s | time / whole |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in upscale_rows(report):
        lines.append(
            f"| {row['backend']} | {row['case']} | {row['mode']} | {row['ms']:.2f} | {row['tiles_per_s']:.1f} | "
            f"{row['megapixels_per_s']:.3f} | {_cell(row, 'tiled_over_whole', '.3f')} |"
        )
    return "\n".join(lines) + "\n"


def data_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per data-loading case and mode: each loader's rate (items / median seconds, in the result's unit),
    DALI's rate over torch's, and for training steps each loader's data-wait fraction."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for result in report["benchmarks"]:
        info = result["extra_info"]
        if info["op"] == "data":
            row = by_key.setdefault((info["case"], info["mode"]), {"case": info["case"], "mode": info["mode"]})
            row["unit"] = info["unit"]
            row[f"{info['provider']}_rate"] = info["items"] / result["stats"]["median"]
            if "data_wait_fraction" in info:
                row[f"{info['provider']}_wait"] = info["data_wait_fraction"]
    for row in by_key.values():
        if "torch_rate" in row and "dali_rate" in row:
            row["dali_over_torch"] = row["dali_rate"] / row["torch_rate"]
    return sorted(by_key.values(), key=lambda row: (DATA_MODES.get(row["mode"], 3), row["case"]))


def data_markdown(report: dict[str, Any]) -> str:
    lines = [
        "| case | measured | torch | DALI | DALI / torch | data wait, torch | data wait, DALI |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in data_rows(report):
        waits = [f"{100 * row[name]:.2f} %" if name in row else "–" for name in ("torch_wait", "dali_wait")]
        lines.append(
            f"| {row['case']} | {row['mode']}, {row['unit']}/s | {_cell(row, 'torch_rate', '.1f')} | "
            f"{_cell(row, 'dali_rate', '.1f')} | {_cell(row, 'dali_over_torch', '.2f')} | {waits[0]} | {waits[1]} |"
        )
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any], name: str, fmt: str) -> str:
    return format(row[name], fmt) if name in row else "–"


def _versus(row: dict[str, Any], first: str, second: str) -> str:
    """Times `first` and `second` of `row` as "a / b (a/b×)" in ms; a dash for a missing one, and then no ratio."""
    cells = f"{_cell(row, first, '.3f')} / {_cell(row, second, '.3f')}"
    return f"{cells} ({row[first] / row[second]:.2f}×)" if first in row and second in row else cells


def markdown(report: dict[str, Any]) -> str:
    """The table, headed by the device, versions and what "fused" meant in this run."""
    table = rows(report)
    first = report["benchmarks"][0]["extra_info"] if report["benchmarks"] else {}
    lines = [
        f"Device: {first.get('device', '?')} · torch {first.get('torch', '?')} · triton {first.get('triton', '?')} · "
        f"dtype {first.get('dtype', '?')} · fused = `{first.get('fused_backend', '?')}` · {report.get('datetime', '')}",
    ]
    if table:
        lines += [
            "",
            "| op | case | mode | eager ms | fused ms | speed-up | interleaved ms, eager / fused (speed-up) | "
            "torch.compile ms, eager / fused model (speed-up) | interleaved torch.compile ms, eager / fused model "
            "(speed-up) | torch.compile reduce-overhead ms, eager / fused model (speed-up) | "
            "CUDA-graphed ms, eager / fused | saved-activation ratio | traffic fused/min (eager/min) | fused GB/s | "
            "fused % of peak | GPU-busy ms, eager / fused | fused GPU-busy GB/s (% of peak) |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for row in table:
        traffic = (
            f"{_cell(row, 'traffic_vs_minimum', '.2f')} ({row['eager_traffic_vs_minimum']:.2f})"
            if "eager_traffic_vs_minimum" in row
            else "–"
        )
        peak = f"{100 * row['fraction_of_peak']:.0f} %" if "fraction_of_peak" in row else "–"
        compiled = _versus(row, "compiled_ms", "compiled_fused_ms")
        compiled_graphs = _versus(row, "compiled_graphs_ms", "compiled_fused_graphs_ms")
        graphed = f"{_cell(row, 'eager_graphs_ms', '.3f')} / {_cell(row, 'fused_graphs_ms', '.3f')}"
        interleaved, interleaved_compiled = (
            _versus(row, f"{name}_eager_ms", f"{name}_fused_ms") if f"{name}_eager_ms" in row else "–"
            for name in ("interleaved", "interleaved_compiled")
        )
        busy = f"{_cell(row, 'eager_device_ms', '.3f')} / {_cell(row, 'fused_device_ms', '.3f')}"
        busy_bandwidth = (
            f"{row['device_achieved_gbps']:.0f} ({100 * row['device_fraction_of_peak']:.0f} %)"
            if "device_fraction_of_peak" in row
            else "–"
        )
        lines.append(
            f"| {row['op']} | {row['case']} | {row['mode']} | {row['eager_ms']:.3f} | {row['fused_ms']:.3f} | "
            f"{row['speedup']:.2f}× | {interleaved} | {compiled} | {interleaved_compiled} | {compiled_graphs} | "
            f"{graphed} | "
            f"{_cell(row, 'memory_ratio', '.2f')} | {traffic} | {_cell(row, 'achieved_gbps', '.0f')} | {peak} | "
            f"{busy} | {busy_bandwidth} |"
        )
    if upscale_rows(report):
        lines += ["", upscale_markdown(report).rstrip("\n")]
    if data_rows(report):
        lines += ["", data_markdown(report).rstrip("\n")]
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    """Horizontal bars of speed-up and saved-activation ratio per row, a line at 1 (parity)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = rows(report)
    labels = [f"{row['op']} · {row['case']} · {row['mode']}" for row in table]
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.32 * len(table) + 1.5), sharey=True)
    for axis, name, title in (
        (axes[0], "speedup", "speed-up (eager / fused), >1 is faster"),
        (axes[1], "memory_ratio", "activation bytes kept (fused / eager), <1 is leaner"),
    ):
        axis.barh(
            range(len(table)),
            [row.get(name, float("nan")) for row in table],
            color="tab:blue" if name == "speedup" else "tab:green",
        )
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set_title(title, fontsize=9)
    axes[0].set_yticks(range(len(table)), labels, fontsize=7)
    axes[0].invert_yaxis()
    first = report["benchmarks"][0]["extra_info"] if report["benchmarks"] else {}
    fig.suptitle(f"fastgan fused vs eager on {first.get('device', '?')} ({first.get('dtype', '?')})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("json", type=Path, help="file written by pytest bench/ --benchmark-json FILE")
    parser.add_argument("--out", type=Path, help="also write OUT.md and OUT.png (e.g. bench/results/h100)")
    args = parser.parse_args(argv)
    try:
        report = json.loads(args.json.read_text(encoding="utf-8"))
        report["benchmarks"] = recorded(report)
        tabled = rows(report) or upscale_rows(report) or data_rows(report)
    except (OSError, ValueError) as exc:  # ValueError: also invalid JSON and UTF-8
        print(f"error: cannot read {args.json}: {exc}", file=sys.stderr)
        return 2
    except (TypeError, KeyError, AttributeError) as exc:
        print(f"error: {args.json} is not a fastgan pytest-benchmark JSON ({exc!r})", file=sys.stderr)
        return 2
    if not tabled:
        print(
            f"error: {args.json} holds no eager/fused pairs: the report compares each case's separate eager and "
            "fused results, so run both providers (e.g. pytest bench/ --benchmark-only -k 'eager or fused')",
            file=sys.stderr,
        )
        return 2
    text = markdown(report)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.md").write_text(text)  # not with_suffix: "h200.v2" must not become "h200.md"
        if rows(report):
            chart(report, Path(f"{args.out}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
