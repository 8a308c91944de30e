"""Every Triton kernel compiles ahead of time for sm_80 and sm_90 (no GPU needed) without register spills.

The default run compiles each kernel's bf16 builds for both targets and its fp32 and strided/unaligned builds for
sm_90 (fp32 is what `train.amp=false` and CUDA-graph runs launch); the rest (fp16, fp32 for sm_80) is marked slow
(`-m slow`). `python -m fastgan.kernels.report` prints the same figures.
"""

import pytest

from fastgan.kernels.aot import CAPABILITIES, all_builds, compile_build, resource_usage


def _cases():
    for build in all_builds():
        layout_variant = "strided" in build.label or "unaligned" in build.label
        for capability in CAPABILITIES:
            dtype = build.label.split()[0]
            quick = dtype == "bf16" or (capability == 90 and (dtype == "fp32" or layout_variant))
            yield pytest.param(
                build,
                capability,
                id=f"{build.name}[{build.label}]-sm_{capability}",
                marks=() if quick else pytest.mark.slow,
            )


@pytest.mark.parametrize("build, capability", list(_cases()))
def test_kernel_compiles_without_spills(build, capability):
    usage = resource_usage(compile_build(build, capability), capability)
    assert usage.spill_store_bytes == 0 and usage.spill_load_bytes == 0, usage
    assert usage.registers <= 255, usage
    assert usage.global_loads and usage.global_stores, usage


def test_every_kernel_module_has_builds_for_each_dtype():
    builds = all_builds()
    names = {build.name for build in builds}
    assert len(names) == 15  # 4 + 6 (NHWC) cbn_relu_upsample, 2 pixel_shuffle_prelu, 3 mobilenet_score kernels
    for name in names:
        dtypes = {build.label.split()[0] for build in builds if build.name == name}
        assert dtypes == {"fp32", "fp16", "bf16"}, (name, dtypes)
