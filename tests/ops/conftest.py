"""Shared checks for the fused ops: low-precision results are judged against torch's own error."""

from __future__ import annotations

import pytest
import torch


def _max_abs(t: torch.Tensor) -> float:
    return t.detach().double().abs().max().item() if t.numel() else 0.0


def check_against_reference(
    actual: torch.Tensor, torch_same_dtype: torch.Tensor, truth: torch.Tensor, factor: float = 4.0, what: str = ""
) -> None:
    """Assert `actual` is as close to the fp64 `truth` as torch's own result in the same dtype, within `factor`.

    The budget is ``factor · max|torch_same_dtype − truth| + 16 · eps(dtype) · max|truth|``: a fused kernel may
    round differently from torch, but not be less accurate than a few times torch's own rounding error.
    """
    assert actual.shape == truth.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(truth.shape)}"
    assert actual.dtype == torch_same_dtype.dtype, f"{what}: dtype {actual.dtype} != {torch_same_dtype.dtype}"
    truth = truth.double()
    error = _max_abs(actual.double() - truth)
    budget = factor * _max_abs(torch_same_dtype.double() - truth) + 16 * torch.finfo(actual.dtype).eps * _max_abs(truth)
    assert error <= budget, f"{what}: max error {error:.3g} exceeds budget {budget:.3g} ({actual.dtype})"


@pytest.fixture
def matches_reference():
    """The `check_against_reference` assertion, as a fixture for the op tests."""
    return check_against_reference
