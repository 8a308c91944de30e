import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from fastgan.kernels import cbn_relu_upsample as cbn_kernels
from fastgan.kernels import cbn_relu_upsample_nhwc as nhwc_kernels
from fastgan.models.blocks import ResBlockUp
from fastgan.ops import backend, cbn_relu_upsample, cbn_relu_upsample_conv
from fastgan.ops.cbn_relu_upsample import CBNReLUUpsample, _by_phases, cbn_relu_upsample_ref, traffic

FUSED = ["fused-torch", "triton"]
LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]


def _composed(x, gain, bias, running_mean, running_var, training, scale):
    h = F.batch_norm(x, running_mean, running_var, training=training, momentum=0.1, eps=1e-5)
    h = F.relu(h * gain[:, :, None, None] + bias[:, :, None, None])
    return F.interpolate(h, scale_factor=scale, mode="nearest")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("scale", [1, 2])
def test_reference_equals_batch_norm_relu_interpolate(training, scale):
    x, gain, bias = torch.randn(3, 4, 5, 5) * 2 + 1, torch.rand(3, 4) + 0.5, torch.randn(3, 4)
    mean_a, var_a = torch.randn(4), torch.rand(4) + 0.5
    mean_b, var_b = mean_a.clone(), var_a.clone()
    out = cbn_relu_upsample(x, gain, bias, mean_a, var_a, training=training, scale=scale)
    ref = _composed(x, gain, bias, mean_b, var_b, training, scale)
    assert out.shape == (3, 4, 5 * scale, 5 * scale)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(mean_a, mean_b) and torch.allclose(var_a, var_b)  # running stats updated alike


def _inputs(shape, seed=0):
    """fp64 x (offset mean, so statistics matter), gain around 1 with some negatives, bias, running stats."""
    generator = torch.Generator().manual_seed(seed)
    n, c = shape[:2]
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 2 + 3
    gain = torch.randn(n, c, generator=generator, dtype=torch.float64) * 0.5 + 1
    bias = torch.randn(n, c, generator=generator, dtype=torch.float64) * 0.5
    running = torch.randn(c, generator=generator) + 3, torch.rand(c, generator=generator) * 3 + 1
    return x, gain, bias, running


def _run(name, x, gain, bias, running, training, scale, dtype, grad_out, layout=lambda t: t, device="cpu"):
    """Output, (dx, dgain, dbias) and updated running stats of one backend in `dtype` on `device`."""
    leaves = [layout(x.to(device, dtype, copy=True)), gain.to(device, dtype), bias.to(device, dtype)]
    leaves = [leaf.detach().requires_grad_() for leaf in leaves]
    buffer_dtype = torch.float64 if dtype == torch.float64 else torch.float32  # CPU batch_norm: fp64 needs fp64
    mean, var = (r.to(device, buffer_dtype, copy=True) for r in running)
    with backend(name):
        out = cbn_relu_upsample(*leaves, mean, var, training=training, scale=scale)
    out.backward(grad_out.to(device, out.dtype))
    return out, [leaf.grad for leaf in leaves], (mean, var)


def _check_backend(
    name, shape, training, scale, dtype, matches_reference, layout=lambda t: t, device="cpu", bias_shift=0.0
):
    """Backend `name` on `device` as accurate as torch's own result there in `dtype` (truth: fp64 on the CPU);
    `bias_shift` moves every pre-activation above 0 when large, so that no rounding flips the ReLU mask."""
    x, gain, bias, running = _inputs(shape)
    bias = bias + bias_shift
    n, c, h, w = shape
    grad_out = torch.randn(n, c, h * scale, w * scale, dtype=torch.float64)
    truth = _run("torch", x, gain, bias, running, training, scale, torch.float64, grad_out)
    eager = _run("torch", x, gain, bias, running, training, scale, dtype, grad_out, device=device)
    fused = _run(name, x, gain, bias, running, training, scale, dtype, grad_out, layout, device)
    matches_reference(fused[0].cpu(), eager[0].cpu(), truth[0], what="out")
    for label, got, same, exact in zip(("dx", "dgain", "dbias"), fused[1], eager[1], truth[1], strict=True):
        matches_reference(got.cpu(), same.cpu(), exact, what=label)
    for label, got, same, exact in zip(("running_mean", "running_var"), fused[2], eager[2], truth[2], strict=True):
        matches_reference(got.cpu(), same.cpu(), exact, what=label)  # fp32 buffers, x rounded to dtype first
    return fused


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("scale", [1, 2])
def test_fused_matches_reference(name, dtype, training, scale, matches_reference):
    _check_backend(name, (3, 4, 5, 5), training, scale, dtype, matches_reference)


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("shape", [(1, 3, 5, 5), (2, 64, 2, 3), (4, 2, 16, 16), (2, 3, 23, 37)], ids=str)
def test_fused_odd_shapes(name, shape, matches_reference):
    _check_backend(name, shape, True, 2, torch.float32, matches_reference)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("scale, shape", [(3, (2, 3, 5, 7)), (4, (2, 3, 5, 7)), (2, (1, 2, 3, 1100))], ids=str)
def test_plane_kernels_any_scale_and_row_width(scale, shape, training, matches_reference):
    """The NCHW plane kernels: ×4 widens each row twice, ×3 (not a power of two) takes the strided stores and
    loads, and rows wider than one tile (1100 > BLOCK) are walked in several column blocks."""
    assert shape[3] > cbn_kernels.BLOCK or scale != 2
    _check_backend("triton", shape, training, scale, torch.float32, matches_reference)


def CHANNELS_LAST(t):
    return t.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("shape", [(1, 3, 5, 5), (2, 70, 3, 3), (4, 5, 9, 7)], ids=str)
def test_nhwc_kernels_match_reference(shape, scale, training, dtype, matches_reference):
    """Channels-last inputs take the NHWC kernels (channel blocks with masked tails: C = 3, 5, 70 > 64) and come
    back channels-last, output and dx."""
    out, (dx, _, _), _ = _check_backend("triton", shape, training, scale, dtype, matches_reference, CHANNELS_LAST)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert dx.is_contiguous(memory_format=torch.channels_last) and not dx.is_contiguous()


@pytest.mark.parametrize("layout", [lambda t: t, CHANNELS_LAST], ids=["nchw", "channels_last"])
def test_fp16_block_sums_beyond_fp16_range_stay_finite(layout):
    """In fp16 a block sum of up-sampled gradients (gz) can exceed fp16's range while dx does not (rstd ≈ 0.02
    here): the training backward stages gz in fp32 for fp16, so dx stays finite and right."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 4, 4, generator=generator, dtype=torch.float64) * 50
    grad = torch.randn(2, 2, 8, 8, generator=generator, dtype=torch.float64).sign() * 20000
    gain, bias = torch.ones(2, 2), torch.full((2, 2), 5.0)
    x16, grad16 = layout(x.half()), layout(grad.half())
    _, mean, rstd = cbn_kernels.forward_batch_stats(x16, gain, bias, None, None, 0.1, 1e-5, 2)
    dx, _, _ = cbn_kernels.backward(grad16, x16, mean, rstd, gain, bias, 2, True)
    truth = x16.double().requires_grad_()
    cbn_relu_upsample(truth, gain.double(), bias.double(), scale=2).backward(grad16.double())
    assert torch.isfinite(dx).all()
    torch.testing.assert_close(dx.double(), truth.grad, rtol=0, atol=2e-3 * truth.grad.abs().max().item())


@pytest.fixture
def max_split(request, monkeypatch):
    """nhwc_kernels.MAX_SPLIT set to the test's parameter (None: left as it is), pixel_split's cache cleared around
    it: a low cap gives ranges of several tiles at shapes the interpreter runs in a second ((1, 64, 40, 40) took 10 s
    to reach them under the real cap)."""
    if request.param is not None:
        monkeypatch.setattr(nhwc_kernels, "MAX_SPLIT", request.param)
    nhwc_kernels.pixel_split.cache_clear()
    yield request.param
    nhwc_kernels.pixel_split.cache_clear()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    "shape, max_split",
    [((1, 64, 12, 12), None), ((2, 64, 9, 7), None), ((1, 64, 12, 11), 4)],
    ids=["even", "uneven", "multi-tile"],
    indirect=["max_split"],
)
def test_nhwc_kernels_split_pixels_over_programs(shape, max_split, training, matches_reference):
    """Samples whose pixels span several tiles are split over programs (even, uneven and multi-tile ranges, the last
    ending in a partial tile); the partial sums they leave are reduced in the finalise kernels. fp32: at thousands of
    values per sample, bf16 rounding flips the ReLU mask of a few near-zero z, and which ones flip differs between
    torch and the kernels (the dtype paths are checked on the small shapes above)."""
    n, c, h, w = shape
    split, chunk = nhwc_kernels.pixel_split(n, c, h * w)
    assert split > 1 and (split - 1) * chunk < h * w <= split * chunk
    block_p = nhwc_kernels.tile_shape(c)[0]
    assert (chunk > block_p) == (max_split is not None) and (max_split is None or h * w % block_p)
    _check_backend("triton", shape, training, 2, torch.float32, matches_reference, CHANNELS_LAST)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_nhwc_kernels_split_pixels_in_low_precision(training, dtype, matches_reference):
    """The split-pixel partial sums and their finalise kernels in fp16/bf16, with every pre-activation well above 0
    (a bias shift of 20), so that the ReLU mask cannot flip between torch's rounding and the kernels'."""
    shape = (1, 64, 12, 12)
    assert nhwc_kernels.pixel_split(1, 64, 144)[0] > 1
    _check_backend("triton", shape, training, 2, dtype, matches_reference, CHANNELS_LAST, bias_shift=20.0)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_nhwc_kernels_take_views_gapped_gradients_and_broadcast_gains(training):
    """Channel slices of a channels-last tensor (unit channel stride, wider pixel strides), an incoming gradient
    with gaps between pixels and a zero-stride (expanded) gain all take the NHWC kernels and match torch."""
    x_full, _, bias, (mean, var) = _inputs((2, 8, 5, 6))
    x = CHANNELS_LAST(x_full.float())[:, 2:7]  # (2, 5, 5, 6), strides (240, 1, 48, 8)
    gain = torch.rand(1, 5, dtype=torch.float32).add(0.5).expand(2, 5)  # stride (0, 1)
    wide = torch.randn(2, 5, 10, 24, dtype=torch.float32)
    grad = CHANNELS_LAST(wide)[..., ::2]  # (2, 5, 10, 12) with a gap after every pixel
    assert x.stride(1) == 1 and gain.stride(0) == 0 and grad.stride(1) == 1
    results = []
    for name in ("torch", "triton"):
        leaves = [t.detach().requires_grad_() for t in (x, gain, bias[:, 2:7].float())]  # views kept as they are
        running = mean[2:7].clone(), var[2:7].clone()
        with backend(name):
            out = cbn_relu_upsample(*leaves, *running, training=training, scale=2)
        out.backward(grad)
        results.append([out, *(leaf.grad for leaf in leaves), *running])
    for got, ref in zip(*results, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert results[1][0].is_contiguous(memory_format=torch.channels_last)  # the NHWC kernels ran


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize(
    "layout",
    [
        CHANNELS_LAST,
        lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),  # column-major planes
        lambda t: torch.cat([t, t], dim=3)[..., : t.shape[3]],  # rows with a gap
    ],
    ids=["channels_last", "transposed", "strided"],
)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fused_non_contiguous_inputs(name, layout, training, matches_reference):
    _check_backend(name, (2, 3, 4, 6), training, 2, torch.float32, matches_reference, layout)


#: x shapes of the conv variant's tests: 5×5 convolves the up-sampled activation, 9×7 by phases (see `_by_phases`).
CONV_SHAPES = {"direct": (2, 4, 5, 5), "by-phases": (2, 4, 9, 7)}


@pytest.mark.parametrize("path", CONV_SHAPES)
def test_conv_shapes_take_the_path_they_are_named_for(path):
    x, weight = torch.empty(CONV_SHAPES[path]), torch.empty(3, 4, 3, 3)
    assert _by_phases(x, weight, 2) == (path == "by-phases")
    assert not _by_phases(x, weight, 1)


@pytest.mark.parametrize("path", CONV_SHAPES)
def test_conv_variant_takes_the_path_it_chose(path, monkeypatch):
    """The by-phases shape runs `upsample_conv` forward and `upsample_conv_backward`, once each; the direct one
    neither (both give the same numbers, so only this tells the paths apart)."""
    module = sys.modules["fastgan.ops.cbn_relu_upsample"]
    calls = []
    for name in ("upsample_conv", "upsample_conv_backward"):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    _conv_run("fused-torch", torch.float32, True, path=path)
    assert calls == (["upsample_conv", "upsample_conv_backward"] if path == "by-phases" else [])


def _conv_run(name, dtype, training, autocast=False, device="cpu", layout=lambda t: t, path="direct"):
    """Output, gradients (x, gain, bias, weight, conv bias) and running stats of cbn_relu_upsample_conv.

    x and the conv in `dtype`; gain and bias stay fp32 (as the embeddings give them under autocast).
    """
    x, gain, bias, (mean, var) = _inputs(CONV_SHAPES[path])
    generator = torch.Generator().manual_seed(1)
    weight, conv_bias = torch.randn(3, 4, 3, 3, generator=generator), torch.randn(3, generator=generator)
    conv_dtype = torch.float32 if autocast else dtype
    affine = torch.float64 if dtype == torch.float64 else torch.float32  # the fp64 truth: everything in fp64
    mean, var = mean.to(affine), var.to(affine)
    leaves = [x.to(dtype), gain.to(affine), bias.to(affine), weight.to(conv_dtype), conv_bias.to(conv_dtype)]
    leaves = [leaf.to(device).detach() for leaf in leaves]
    leaves = [layout(leaf) if leaf.dim() == 4 else leaf for leaf in leaves]  # x and the conv weight
    leaves = [leaf.requires_grad_() for leaf in leaves]
    mean, var = mean.to(device, copy=True), var.to(device, copy=True)
    with backend(name), torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
        out = cbn_relu_upsample_conv(*leaves, mean, var, training=training, scale=2)
    out.float().mul(torch.linspace(-1, 1, out.numel(), device=device).view_as(out)).sum().backward()
    return out, [leaf.grad for leaf in leaves], (mean, var)


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", [lambda t: t, CHANNELS_LAST], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("path", CONV_SHAPES)
def test_conv_variant_matches_reference(name, training, layout, path):
    fused = _conv_run(name, torch.float32, training, layout=layout, path=path)
    eager = _conv_run("torch", torch.float32, training, path=path)
    for got, ref in zip([fused[0], *fused[1], *fused[2]], [eager[0], *eager[1], *eager[2]], strict=True):
        assert got.dtype == ref.dtype
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("path", CONV_SHAPES)
def test_conv_variant_keeps_float64_under_autocast(path):
    """Autocast leaves float64 operands alone, and so does the fused conv variant (it convolved them in bf16)."""
    x, gain, bias, _ = _inputs(CONV_SHAPES[path])
    weight = torch.randn(3, x.shape[1], 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    outputs = []
    for name in ("fused-torch", "torch"):
        with backend(name), torch.autocast("cpu", dtype=torch.bfloat16):
            outputs.append(cbn_relu_upsample_conv(x, gain, bias, weight, None, training=True, scale=2))
    assert outputs[0].dtype == outputs[1].dtype == torch.float64
    torch.testing.assert_close(*outputs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("autocast", [False, True], ids=["bf16", "autocast-bf16"])
@pytest.mark.parametrize("path", CONV_SHAPES)
def test_conv_variant_in_bf16_with_fp32_gain(name, autocast, path):
    """bf16 activations with fp32 gain/bias (and under CPU autocast: fp32 weights cast to bf16 for the conv)."""
    fused = _conv_run(name, torch.bfloat16, True, autocast, path=path)
    eager = _conv_run("torch", torch.bfloat16, True, autocast, path=path)
    assert fused[0].dtype == eager[0].dtype == torch.bfloat16
    for got, ref in zip([fused[0], *fused[1]], [eager[0], *eager[1]], strict=True):
        assert got.dtype == ref.dtype
        scale = ref.float().abs().max().item()
        assert (got.float() - ref.float()).abs().max().item() <= 0.05 * scale, (got.dtype, got.shape)


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("path", CONV_SHAPES)
def test_conv_variant_in_low_precision_is_as_accurate_as_torch(name, dtype, training, path, matches_reference):
    """fp16 and bf16 activations and convolution (gain/bias fp32), training and eval: the output, every gradient and
    the running statistics within twice torch's own error of the fp64 truth — three times by phases, whose phase
    kernels (sums of taps, in fp32) are rounded to the dtype once more than torch's weights: the same error at every
    pixel, which dgain and dbias, sums over pixels, collect (fp16 eval dgain: 2.6× torch's error, 1.1e-4 of its
    largest value; an fp32 convolution would remove it at a real cost; under autocast the weights are fp32 and the
    kernels rounded once, like torch's)."""
    fused = _conv_run(name, dtype, training, path=path)
    eager = _conv_run("torch", dtype, training, path=path)
    truth = _conv_run("torch", torch.float64, training, path=path)
    names = ["out", "dx", "dgain", "dbias", "dweight", "dconv_bias", "running_mean", "running_var"]
    for what, got, ref, true in zip(
        names,
        [fused[0], *fused[1], *fused[2]],
        [eager[0], *eager[1], *eager[2]],
        [truth[0], *truth[1], *truth[2]],
        strict=True,
    ):
        matches_reference(got, ref, true, factor=3.0 if path == "by-phases" else 2.0, what=f"{name} {what}")


def test_forward_conv_accepts_only_same_convolutions():
    module = CBNReLUUpsample(4)
    x, gain, bias = torch.randn(2, 4, 5, 5), torch.ones(2, 4), torch.zeros(2, 4)
    assert module.forward_conv(x, gain, bias, nn.Conv2d(4, 3, 3, padding=1)).shape == (2, 3, 10, 10)
    for k in (3, 5):  # padding="same" is k // 2 for an odd kernel
        conv = nn.Conv2d(4, 3, k, padding="same")
        torch.testing.assert_close(module.forward_conv(x, gain, bias, conv), conv(module(x, gain, bias)))
    for conv in (
        nn.Conv2d(4, 3, 4, padding="same"),  # even: padded unevenly
        nn.Conv2d(4, 3, 3, padding=0),
        nn.Conv2d(4, 3, 3, stride=2, padding=1),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
    ):
        with pytest.raises(ValueError, match="'same' convolutions"):
            module.forward_conv(x, gain, bias, conv)


@pytest.mark.parametrize("name", FUSED)
def test_fused_backward_is_not_differentiable_twice(name):
    x, gain, bias, _ = _inputs((2, 3, 4, 4))
    leaves = [t.float().requires_grad_() for t in (x, gain, bias)]
    with backend(name):
        out = cbn_relu_upsample(*leaves)
    grad_out = torch.ones_like(out, requires_grad=True)  # a double-backward graph: d(dx)/d(grad_out)
    (grad_x,) = torch.autograd.grad(out, leaves[0], grad_out, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad_x.sum().backward()


def test_fused_torch_gradcheck():
    x, gain, bias, (mean, var) = _inputs((2, 3, 4, 4))
    args = [t.clone().requires_grad_() for t in (x, gain, bias)]
    with backend("fused-torch"):
        assert torch.autograd.gradcheck(lambda a, g, b: cbn_relu_upsample(a, g, b, scale=2), args)
        weight = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
        conv_bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
        for x_shape, training in (((2, 3, 4, 4), False), ((2, 3, 8, 6), False), ((2, 3, 8, 6), True)):
            x, gain, bias, _ = _inputs(x_shape)
            assert _by_phases(x, weight, 2) == (x_shape[2] == 8)  # the direct path, then the one by phases
            running = (mean.double(), var.double()) if not training else (None, None)  # batch statistics
            assert torch.autograd.gradcheck(
                lambda a, g, b, wt, cb, r=running, t=training: cbn_relu_upsample_conv(a, g, b, wt, cb, *r, training=t),
                [t.clone().requires_grad_() for t in (x, gain, bias)] + [weight, conv_bias],
            )


def test_shape_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="gain, bias \\(N, C\\)"):
        cbn_relu_upsample(torch.randn(2, 3, 4, 4), torch.ones(3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="running_mean and running_var"):
        cbn_relu_upsample(torch.randn(2, 3, 4, 4), torch.ones(2, 3), torch.zeros(2, 3), training=False)
    with pytest.raises(ValueError, match="k odd"):
        cbn_relu_upsample_conv(
            torch.randn(2, 3, 4, 4), torch.ones(2, 3), torch.zeros(2, 3), torch.ones(5, 3, 2, 2), None
        )
    with pytest.raises(ValueError, match=r"conv_bias must be \(5,\) for weight \(5, 3, 3, 3\), got \(3,\)"):
        cbn_relu_upsample_conv(
            torch.randn(2, 3, 4, 4), torch.ones(2, 3), torch.zeros(2, 3), torch.ones(5, 3, 3, 3), torch.zeros(3)
        )
    with pytest.raises(ValueError, match="weight is on meta and x on cpu"):
        cbn_relu_upsample_conv(
            torch.randn(2, 3, 4, 4), torch.ones(2, 3), torch.zeros(2, 3), torch.ones(5, 3, 3, 3, device="meta"), None
        )


@pytest.mark.parametrize("name", ["torch", "fused-torch", "fused-compiled", "triton"])
@pytest.mark.parametrize(
    "case, error, match",
    [
        ("empty batch", ValueError, "is empty"),
        ("empty plane", ValueError, "is empty"),
        ("one running buffer", ValueError, "both be given"),
        ("short running buffers", ValueError, "running_mean must have shape \\(3,\\)"),
        ("integer x", TypeError, "floating-point"),
        ("negative eps", ValueError, "eps must be positive"),
        ("boolean scale", ValueError, "positive integer"),
    ],
)
def test_bad_arguments_are_refused_before_they_touch_the_running_statistics(name, case, error, match):
    """Each of these once slipped through a fused backend: NaN running statistics for good (empty input), a skipped
    update (one buffer), statistics broadcast over channels, int64 output, NaN output, scale True taken as 1."""
    x, gain, bias = torch.randn(2, 3, 4, 4), torch.ones(2, 3), torch.zeros(2, 3)
    mean, var = torch.zeros(3), torch.ones(3)
    kwargs = {"running_mean": mean, "running_var": var}
    if case == "empty batch":
        x, gain, bias = x[:0], gain[:0], bias[:0]
    elif case == "empty plane":
        x = x[..., :0]
    elif case == "one running buffer":
        kwargs["running_var"] = None
    elif case == "short running buffers":
        kwargs = {"running_mean": torch.zeros(1), "running_var": torch.ones(1), "training": False}
    elif case == "integer x":
        x = x.long()
    elif case == "negative eps":
        kwargs["eps"] = -1e-5
    elif case == "boolean scale":
        kwargs["scale"] = True
    with backend(name), pytest.raises(error, match=match):
        cbn_relu_upsample(x, gain, bias, **kwargs)
    assert torch.equal(mean, torch.zeros(3)) and torch.equal(var, torch.ones(3))


@pytest.mark.parametrize("name", ["torch", "fused-torch", "fused-compiled", "triton"])
def test_an_empty_batch_in_eval_mode_gives_an_empty_output(name):
    """Eval mode normalises by the running statistics, which an empty batch leaves alone (as F.batch_norm does); it
    was refused as if it needed batch statistics."""
    x, gain, bias = torch.randn(0, 3, 4, 4), torch.ones(0, 3), torch.zeros(0, 3)
    stats = {"running_mean": torch.zeros(3), "running_var": torch.ones(3), "training": False}
    with backend(name):
        assert cbn_relu_upsample(x, gain, bias, **stats).shape == (0, 3, 8, 8)
        weight = torch.randn(5, 3, 3, 3)
        assert cbn_relu_upsample_conv(x, gain, bias, weight, None, **stats).shape == (0, 5, 8, 8)


@pytest.mark.parametrize(("x_dtype", "affine_dtype"), [(torch.float16, torch.float16), (torch.float32, torch.bfloat16)])
def test_one_broadcast_affine_in_another_dtype_than_the_buffers_runs_on_every_backend(x_dtype, affine_dtype):
    """The eager path handed a broadcast (stride-0) gain to F.batch_norm as its weight, whose CPU kernel refused
    fp16 weights beside fp32 running buffers ("expected scalar type Half but found Float"); the fused path took it."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 4, 4, generator=generator).to(x_dtype)
    gain = (1 + 0.1 * torch.randn(6, generator=generator)).to(affine_dtype).expand(3, 6)
    bias = (0.1 * torch.randn(6, generator=generator)).to(affine_dtype).expand(3, 6)
    results = {}
    for name in ("torch", "fused-torch"):
        with backend(name):
            results[name] = cbn_relu_upsample(x, gain, bias, torch.zeros(6), torch.ones(6), True)
    assert results["torch"].dtype == x_dtype
    torch.testing.assert_close(results["torch"].float(), results["fused-torch"].float(), atol=2e-2, rtol=2e-2)


def test_triton_launcher_rejects_unsupported_dtype():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    with backend("triton"), pytest.raises(ValueError, match="fp32, fp16 or bf16"):
        cbn_relu_upsample(x, torch.ones(2, 3), torch.zeros(2, 3))


def _saved_bytes(measure, name: str, batch: int, in_channels: int, out_channels: int, size: int) -> int:
    """Activation bytes (distinct storages, parameters excluded) a ResBlockUp keeps for backward; on the meta
    device, so only shapes are computed."""
    block = ResBlockUp(in_channels, out_channels, num_classes=10).to("meta")
    x = torch.empty(batch, in_channels, size, size, device="meta", requires_grad=True)
    y = torch.zeros(batch, dtype=torch.long, device="meta")
    with backend(name):
        return measure(lambda: block(x, y), block.parameters())


@pytest.mark.parametrize(
    "in_channels,out_channels,size", [(256, 256, 4), (256, 256, 8), (256, 256, 16), (256, 128, 32), (128, 64, 64)]
)
def test_res_block_up_keeps_at_most_35_percent_of_eager_activations(in_channels, out_channels, size, kept_for_backward):
    """Every ResBlockUp of HRGAN-128 (256 channels) at batch 64: the fused block keeps x and conv1's output."""
    eager = _saved_bytes(kept_for_backward, "torch", 64, in_channels, out_channels, size)
    fused = _saved_bytes(kept_for_backward, "fused-torch", 64, in_channels, out_channels, size)
    assert fused <= 0.35 * eager, f"fused keeps {fused / eager:.1%} of eager's activation bytes"


def test_traffic_of_the_fused_forward():
    eval_mode = traffic((64, 128, 32, 32), torch.bfloat16, scale=2, training=False)["forward"]
    assert eval_mode.fused == eval_mode.minimum < eval_mode.eager
    training = traffic((64, 128, 32, 32), torch.bfloat16, scale=2, training=True)["forward"]
    assert training.fused_overhead == pytest.approx(1 / 5)  # the statistics pass reads x once more
    backward = traffic((64, 128, 32, 32), torch.bfloat16, scale=2)["backward"]
    assert backward.fused < backward.eager
    assert backward.fused_overhead == pytest.approx(1 / 2)  # gz written and read back, x read twice


class _TracedBytes(TorchDispatchMode):
    """Bytes each ATen op reads and writes, tensors of at least `threshold` elements only, a broadcast view counted
    by the elements it holds, ops returning a view of their input (no kernel) left out."""

    def __init__(self, threshold: int):
        super().__init__()
        self.threshold, self.total = threshold, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        storages = {t.untyped_storage().data_ptr() for t in inputs}
        if not any(t.untyped_storage().data_ptr() in storages for t in outputs):
            for t in inputs + outputs:
                if t.numel() >= self.threshold:  # elements along broadcast (stride 0) dimensions are not held
                    held = math.prod(size for size, stride in zip(t.shape, t.stride(), strict=True) if stride)
                    self.total += held * t.element_size()
        return out


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
def test_eager_traffic_follows_the_reference_kernels(dtype, scale, training):
    """The eager model is the reference's ATen ops, each reading its inputs and writing its outputs once — with fp32
    gain/bias promoting the affine, ReLU and their gradients for fp16/bf16 x — plus what one ATen op does in two
    passes: training batch_norm reads x once more for its statistics, and its backward reads grad and x once more
    for its reduction; in eval the backward's dx = grad · rstd does not read x."""
    n, c, h, w = 2, 3, 4, 5
    x = torch.randn(n, c, h, w, dtype=dtype).requires_grad_()
    gain, bias = (torch.rand(n, c) + 0.5).requires_grad_(), torch.randn(n, c).requires_grad_()
    running = torch.zeros(c), torch.ones(c)
    with _TracedBytes(x.numel()) as forward:
        out = cbn_relu_upsample_ref(x, gain, bias, *running, training, 0.1, 1e-5, scale)
    grad = torch.randn_like(out)
    with _TracedBytes(x.numel()) as backward:
        torch.autograd.grad(out, (x, gain, bias), grad)
    unit = x.numel() * dtype.itemsize
    model = traffic((n, c, h, w), dtype, scale, training)
    assert model["forward"].eager == forward.total + (unit if training else 0)
    assert model["backward"].eager == backward.total + (2 * unit if training else -unit)


CUDA_SHAPES = [(3, 4, 5, 5), (1, 3, 5, 5), (2, 3, 23, 37), (64, 256, 16, 16), (8, 64, 64, 64)]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("shape", CUDA_SHAPES, ids=str)
def test_compiled_kernels_on_cuda_match_reference(shape, scale, training, dtype, matches_reference):
    """The compiled kernels (not the interpreter) against the fp64 truth, judged by torch's own CUDA error."""
    _check_backend("triton", shape, training, scale, dtype, matches_reference, device="cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "layout",
    [
        lambda t: t.contiguous(memory_format=torch.channels_last),
        lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),
        lambda t: torch.cat([t, t], dim=3)[..., : t.shape[3]],
    ],
    ids=["channels_last", "transposed", "strided"],
)
def test_compiled_kernels_on_cuda_take_non_contiguous_inputs(layout, dtype, matches_reference):
    _check_backend("triton", (4, 32, 12, 20), True, 2, dtype, matches_reference, layout, device="cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "autocast-bf16"])
@pytest.mark.parametrize("layout", [lambda t: t, CHANNELS_LAST], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("path", CONV_SHAPES)
def test_compiled_conv_variant_on_cuda(training, autocast, layout, path):
    """HRGAN's path: the conv variant, NCHW (plane kernels) and channels-last (NHWC kernels, gradient from cuDNN)."""
    dtype = torch.bfloat16 if autocast else torch.float32
    fused = _conv_run("triton", dtype, training, autocast, device="cuda", layout=layout, path=path)
    eager = _conv_run("torch", dtype, training, autocast, device="cuda", path=path)
    for got, ref in zip([fused[0], *fused[1], *fused[2]], [eager[0], *eager[1], *eager[2]], strict=True):
        assert got.dtype == ref.dtype
        tolerance = 0.05 * ref.float().abs().max().item() if autocast else 1e-3 * (1 + ref.abs().max().item())
        assert (got.float() - ref.float()).abs().max().item() <= tolerance, (got.dtype, got.shape)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("shape", [(2, 70, 3, 3), (64, 256, 16, 16), (8, 64, 64, 64)], ids=str)
def test_compiled_nhwc_kernels_on_cuda_match_reference(shape, scale, training, dtype, matches_reference):
    out, (dx, _, _), _ = _check_backend(
        "triton", shape, training, scale, dtype, matches_reference, CHANNELS_LAST, device="cuda"
    )
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert dx.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("layout", [lambda t: t, CHANNELS_LAST], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_a_nan_in_x_propagates_as_in_eager(name, layout, training):
    """ReLU keeps NaN (max(NaN, 0) is NaN, not 0) and its backward passes g where z is NaN, as torch's does: a NaN
    input reaches the output and the loss (in training, its whole channel through the batch statistics) instead of
    vanishing into zeros that the trainer's NaN check never sees."""
    x, gain, bias, running = _inputs((2, 3, 4, 5))
    x[0, 1, 2, 3] = float("nan")
    results = []
    for backend_name in ("torch", name):
        leaves = [layout(x.float()).requires_grad_(), gain.float().requires_grad_(), bias.float().requires_grad_()]
        mean, var = (r.clone() for r in running)
        with backend(backend_name):
            out = cbn_relu_upsample(*leaves, mean, var, training=training, scale=2)
        out.backward(torch.ones_like(out))
        results.append([out, *(leaf.grad for leaf in leaves), mean, var])
    for label, got, expected in zip(("out", "dx", "dgain", "dbias", "mean", "var"), *reversed(results), strict=True):
        assert torch.equal(got.isnan(), expected.isnan()), label
        torch.testing.assert_close(got, expected, equal_nan=True, msg=label)
    assert results[1][0][0, 1, 4:6, 6:8].isnan().all()  # the NaN pixel's 2×2 block at least


def test_planes_beyond_int32_offsets_are_refused():
    """A plane whose up-sampled size reaches 2³¹ elements would wrap the kernels' 32-bit in-plane offsets."""
    x = torch.empty(1, 3, 16384, 16384, device="meta", dtype=torch.bfloat16)
    gain, bias = torch.empty(1, 3, device="meta"), torch.empty(1, 3, device="meta")
    stats = torch.empty(3, device="meta")
    with pytest.raises(ValueError, match="2³¹ or more pixels.*process it in tiles"):
        cbn_kernels.forward_given_stats(x, stats, stats, gain, bias, 4)
    grad = torch.empty(1, 3, 65536, 65536, device="meta", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="2³¹ or more pixels"):
        cbn_kernels.backward(grad, x, stats, stats, gain, bias, 4, False)
