"""Shared checks for the fused ops: low-precision results are judged against torch's own error (DESIGN.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
import torch

#: atol[dtype] as a fraction of the mean magnitude of the true values: about one rounding step of the dtype.
ATOL_SCALE = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float64: 1e-12}


def check_against_reference(
    actual: torch.Tensor, torch_same_dtype: torch.Tensor, truth: torch.Tensor, factor: float = 2.0, what: str = ""
) -> None:
    """Assert ``max|actual − truth| <= factor · max|torch_same_dtype − truth| + atol[dtype]`` (flash-attention's rule).

    `truth` is the reference in fp64; `torch_same_dtype` is torch's own result in `actual`'s dtype, so a fused
    kernel may round differently from torch but not be less accurate than `factor` times torch's own error.
    atol[dtype] is `ATOL_SCALE[dtype]` times the mean |truth| plus one ulp of max |truth| in the dtype: results
    rounded in another order, or truncated (Triton's CPU interpreter truncates fp32 -> bf16 where GPUs round to
    nearest), may differ from torch's by a unit in the last place.
    """
    assert actual.shape == truth.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(truth.shape)}"
    assert actual.dtype == torch_same_dtype.dtype, f"{what}: dtype {actual.dtype} != {torch_same_dtype.dtype}"
    truth = truth.detach().double()
    error = (actual.detach().double() - truth).abs().max().item()
    torch_error = (torch_same_dtype.detach().double() - truth).abs().max().item()
    ulp = torch.finfo(actual.dtype).eps * truth.abs().max().item()  # one unit in the last place of the largest value
    atol = ATOL_SCALE[actual.dtype] * truth.abs().mean().item() + ulp
    budget = factor * torch_error + atol
    assert error <= budget, f"{what}: max error {error:.3g} > {factor}·{torch_error:.3g} + {atol:.3g} ({actual.dtype})"


@pytest.fixture
def matches_reference():
    """The `check_against_reference` assertion, as a fixture for the op tests."""
    return check_against_reference


def kept_for_backward_bytes(forward: Callable[[], object], parameters: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd keeps for backward while `forward()` runs, `parameters` left out;
    storages told apart by identity, so it works on the meta device (shapes only, nothing computed)."""
    excluded = {p.untyped_storage()._cdata for p in parameters}
    storages = {}

    def pack(tensor):
        if tensor.untyped_storage()._cdata not in excluded:
            storages[tensor.untyped_storage()._cdata] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return sum(storages.values())


@pytest.fixture
def kept_for_backward():
    """The `kept_for_backward_bytes` measurement, as a fixture for the op tests."""
    return kept_for_backward_bytes
