"""pixel_shuffle_prelu: the fused backends against the eager reference, the Triton kernels' AOT builds, traffic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastgan.ops.backends import backend
from fastgan.ops.pixel_shuffle_prelu import (
    PixelShufflePReLU,
    pixel_shuffle_prelu,
    pixel_shuffle_prelu_ref,
    traffic,
)

FUSED = ["triton", "fused-torch"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _inputs(n, c, h, w, r, slopes, dtype=torch.float32, seed=0):
    """x (N, C·r², H, W) with a few exact zeros (the s > 0 convention), slopes in [-0.5, 1), grad_out."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c * r * r, h, w, generator=gen)
    x.view(-1)[:: max(1, x.numel() // 7)] = 0.0
    weight = torch.rand(slopes, generator=gen) * 1.5 - 0.5
    grad = torch.randn(n, c, h * r, w * r, generator=gen)
    return x.to(dtype), weight.to(dtype), grad.to(dtype)


def _run(fn, x, weight, grad, upscale):
    x = x.detach().requires_grad_()  # keeps x's strides (clone would densify a sliced view)
    weight = weight.detach().clone().requires_grad_()
    out = fn(x, weight, upscale)
    out.backward(grad)
    return out.detach(), x.grad, weight.grad


def _check_backend(name, x, weight, grad, upscale, check):
    """Output, dx and dweight of backend `name` as accurate as torch's own in x's dtype (truth: fp64 reference)."""
    truth = _run(pixel_shuffle_prelu_ref, x.double(), weight.double(), grad.double(), upscale)
    same = _run(pixel_shuffle_prelu_ref, x, weight, grad, upscale)
    with backend(name):
        actual = _run(pixel_shuffle_prelu, x, weight, grad, upscale)
    for what, a, s, t in zip(("out", "dx", "dweight"), actual, same, truth, strict=True):
        check(a, s, t, what=f"{name} {what}")
    return actual


@pytest.mark.parametrize("slopes", ["shared", "per-channel"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", FUSED)
def test_matches_reference_per_dtype(name, dtype, slopes, matches_reference):
    c = 4
    x, weight, grad = _inputs(2, c, 6, 7, 2, 1 if slopes == "shared" else c, dtype)
    out, dx, _ = _check_backend(name, x, weight, grad, 2, matches_reference)
    assert out.is_contiguous() and dx.shape == x.shape


@pytest.mark.parametrize(
    "shape",
    [
        (1, 3, 5, 5, 2),  # odd everything
        (1, 64, 2, 2, 2),  # many channels, tiny planes
        (2, 2, 20, 3, 2),  # output taller than one tile: two row bands
        (1, 1, 2, 70, 2),  # output wider than one tile: the column loop runs twice
        (2, 2, 4, 3, 3),
        (1, 2, 3, 5, 4),
        (2, 3, 4, 4, 1),  # r = 1: plain PReLU
    ],
    ids=lambda s: "N{}C{}H{}W{}r{}".format(*s),
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("name", FUSED)
def test_odd_shapes_and_upscales(name, shape, dtype, matches_reference):
    n, c, h, w, r = shape
    x, weight, grad = _inputs(n, c, h, w, r, c, dtype, seed=sum(shape))
    _check_backend(name, x, weight, grad, r, matches_reference)


def _layouts(dtype):
    """Inputs (N, C·4, H, W) for r = 2 in various memory layouts."""
    x, _, _ = _inputs(2, 3, 5, 6, 2, 3, dtype)
    base, _, _ = _inputs(2, 6, 7, 9, 2, 3, dtype, seed=1)
    return {
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "transposed": x.transpose(2, 3).contiguous().transpose(2, 3),
        "sliced": base[:, ::2, 1:6, 1:7],  # channel stride 2·H·W, rows and columns offset
        "batch_last": x.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2),
    }


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced", "batch_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", FUSED)
def test_non_contiguous_inputs(name, dtype, layout, matches_reference):
    x = _layouts(dtype)[layout]
    assert not x.is_contiguous()
    _, weight, grad = _inputs(2, 3, 5, 6, 2, 3, dtype, seed=2)
    grad = grad.transpose(2, 3).contiguous().transpose(2, 3)  # a non-contiguous incoming gradient too
    out, dx, _ = _check_backend(name, x, weight, grad, 2, matches_reference)
    assert out.is_contiguous()


@pytest.mark.parametrize("name", FUSED)
def test_slopes_in_another_dtype(name, matches_reference):
    x, weight, grad = _inputs(2, 3, 4, 5, 2, 3, torch.bfloat16)
    _, _, dweight = _check_backend(name, x, weight.float(), grad, 2, matches_reference)
    assert dweight.dtype == torch.float32


def test_triton_backward_is_deterministic_and_saves_only_inputs():
    x, weight, grad = _inputs(2, 4, 6, 6, 2, 4)
    x.requires_grad_()
    weight.requires_grad_()
    with backend("triton"):
        out = pixel_shuffle_prelu(x, weight, 2)
    saved = out.grad_fn.saved_tensors
    assert [t.data_ptr() for t in saved] == [x.data_ptr(), weight.data_ptr()]
    first = torch.autograd.grad(out, (x, weight), grad, retain_graph=True)
    second = torch.autograd.grad(out, (x, weight), grad)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("slopes", [1, 3])
def test_gradcheck_fused_torch(slopes):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 12, 3, 4, dtype=torch.float64, generator=gen).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    weight = torch.rand(slopes, dtype=torch.float64, generator=gen).requires_grad_()
    with backend("fused-torch"):
        assert torch.autograd.gradcheck(lambda a, b: pixel_shuffle_prelu(a, b, 2), (x, weight))


@pytest.mark.parametrize("name", ["torch", *FUSED])
def test_module(name):
    module = PixelShufflePReLU(3, upscale=2)
    shared = PixelShufflePReLU(3, upscale=2, shared_slope=True)
    assert module.weight.shape == (3,) and shared.weight.shape == (1,)
    assert torch.all(module.weight == 0.25)
    x = torch.randn(2, 12, 4, 5)
    with backend(name):
        out = module(x)
        out.sum().backward()
    assert out.shape == (2, 3, 8, 10)
    torch.testing.assert_close(out, F.prelu(F.pixel_shuffle(x, 2), torch.full((3,), 0.25)))
    assert module.weight.grad.shape == (3,)


@pytest.mark.parametrize("name", ["torch", *FUSED])
@pytest.mark.parametrize(
    ("x_shape", "weight_shape", "upscale", "message"),
    [
        ((2, 8, 4), (2,), 2, "N, C·r², H, W"),
        ((2, 6, 4, 4), (1,), 2, "multiple of upscale²"),
        ((2, 8, 4, 4), (3,), 2, "1 or C = 2 slopes"),
        ((2, 8, 4, 4), (2, 1), 2, "1 or C = 2 slopes"),
        ((2, 8, 4, 4), (2,), 0, "positive int"),
        ((2, 8, 4, 4), (2,), 2.0, "positive int"),
    ],
)
def test_rejects_bad_inputs(name, x_shape, weight_shape, upscale, message):
    with backend(name), pytest.raises(ValueError, match=message):
        pixel_shuffle_prelu(torch.randn(x_shape), torch.rand(weight_shape), upscale)


def test_rejects_integer_tensors_and_triton_rejects_fp64():
    with pytest.raises(ValueError, match="floating point"):
        pixel_shuffle_prelu(torch.ones(1, 4, 2, 2, dtype=torch.int64), torch.rand(1), 2)
    x = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    with backend("triton"), pytest.raises(ValueError, match="fp32, fp16 or bf16"):
        pixel_shuffle_prelu(x, torch.rand(1, dtype=torch.float64), 2)


def test_triton_launcher_checks_grad_out():
    from fastgan.kernels import pixel_shuffle_prelu as kernels

    x, weight, grad = _inputs(1, 2, 3, 3, 2, 2)
    with pytest.raises(ValueError, match="grad_out must be"):
        kernels.backward(grad[:, :, :-1], x, weight, 2)
    with pytest.raises(ValueError, match="grad_out must be"):
        kernels.backward(grad.half(), x, weight, 2)


@pytest.mark.parametrize(
    "shape", [(16, 256, 64, 64), (4, 256, 24, 24), (1, 12, 270, 480)], ids=lambda s: "x".join(map(str, s))
)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
def test_traffic_fused_near_minimum(shape, dtype):
    report = traffic(shape, dtype, upscale=2)
    size = torch.empty((), dtype=dtype).element_size()
    numel = shape[0] * shape[1] * shape[2] * shape[3]
    for key in ("forward", "backward"):
        t = report[key]
        assert t.minimum <= t.fused <= 1.10 * t.minimum, (key, t)
        assert t.eager > t.fused, (key, t)
    assert report["forward"].minimum == 2 * numel * size + shape[1] // 4 * size
    assert report["forward"].eager == 4 * numel * size + shape[1] // 4 * size


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "shape",
    [
        (2, 4, 6, 7, 2),
        (1, 3, 5, 5, 2),
        (2, 2, 20, 3, 2),
        (1, 1, 2, 70, 2),
        (2, 2, 4, 3, 3),
        (2, 3, 4, 4, 1),
        (16, 64, 64, 64, 2),
        (1, 64, 270, 480, 2),
    ],
    ids=lambda s: "N{}C{}H{}W{}r{}".format(*s),
)
@pytest.mark.parametrize("slopes", ["shared", "per-channel"])
def test_compiled_kernels_on_cuda_match_reference(slopes, shape, dtype, matches_reference):
    """The compiled kernels (not the interpreter) against the fp64 truth, judged by torch's own CUDA error."""
    n, c, h, w, r = shape
    inputs = _inputs(n, c, h, w, r, 1 if slopes == "shared" else c, dtype, seed=sum(shape))
    x, weight, grad = (t.cuda() for t in inputs)
    _check_backend("triton", x, weight, grad, r, matches_reference)


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced", "batch_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_compiled_kernels_on_cuda_take_non_contiguous_inputs(dtype, layout, matches_reference):
    x = _layouts(dtype)[layout].cuda()
    _, weight, grad = _inputs(2, 3, 5, 6, 2, 3, dtype, seed=2)
    grad = grad.cuda().transpose(2, 3).contiguous().transpose(2, 3)
    out, _, _ = _check_backend("triton", x, weight.cuda(), grad, 2, matches_reference)
    assert out.is_contiguous()
