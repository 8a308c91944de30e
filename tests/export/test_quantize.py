"""int8 Q/DQ export: Q/DQ pairs around every convolution, runs in onnxruntime close to fp32, calibration cached."""

import logging

import numpy as np
import onnx
import pytest
import torch

from fastgan.export.onnx_export import ExportError, export_upscaler, onnxruntime_session, read_metadata
from fastgan.export.quantize import TileReader, calibration_cache_path, quantize_int8
from fastgan.models.srgan import SRResNet


def _frames(count=4, seed=0):
    """Smooth random 'photos' (3, 48, 56) in [0, 1]: low-frequency noise up-sampled, like natural images."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 6, 7, generator=generator)
    return [f.numpy() for f in torch.nn.functional.interpolate(coarse, size=(48, 56), mode="bicubic").clamp(0, 1)]


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = SRResNet(2, channels=8, blocks=1, batch_norm=False, bicubic_skip=True).eval()
    return export_upscaler(model, tmp_path_factory.mktemp("int8") / "x2.onnx", scale=2, receptive_radius=10)


def test_int8_model_has_qdq_convs_and_stays_close_to_fp32(fp32_onnx):
    int8 = quantize_int8(fp32_onnx, fp32_onnx.with_name("x2-int8.onnx"), _frames(), tile=32, count=16)
    proto = onnx.load(int8)
    ops = [node.op_type for node in proto.graph.node]
    convs = ops.count("Conv")
    assert convs > 0 and ops.count("QuantizeLinear") >= convs and ops.count("DequantizeLinear") >= 2 * convs
    zero_points = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer if "zero_point" in t.name]
    assert zero_points and all((z == 0).all() and z.dtype == np.int8 for z in zero_points)  # symmetric, TensorRT's
    assert read_metadata(int8)["fastgan.precision"] == "int8"
    lr = _frames(1, seed=1)[0][None]
    (ref,) = onnxruntime_session(fp32_onnx, ["CPUExecutionProvider"]).run(None, {"lr": lr})
    (out,) = onnxruntime_session(int8, ["CPUExecutionProvider"]).run(None, {"lr": lr})
    psnr = 10 * np.log10(1 / np.mean((np.clip(out, 0, 1) - np.clip(ref, 0, 1)) ** 2))
    assert psnr > 35, psnr


def test_calibration_is_cached_per_model_method_and_frames(fp32_onnx, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="fastgan.export.quantize")
    first = quantize_int8(fp32_onnx, tmp_path / "a.onnx", _frames(), tile=32, count=8, method="minmax")
    cache = calibration_cache_path(fp32_onnx, "minmax", TileReader(_frames(), 32, 8).digest)
    assert cache.is_file()
    again = quantize_int8(fp32_onnx, tmp_path / "b.onnx", None, method="minmax")  # no frames: the cached ranges
    assert onnx.load(first).graph == onnx.load(again).graph
    caplog.clear()
    quantize_int8(fp32_onnx, tmp_path / "b.onnx", _frames(), tile=32, count=8, method="minmax")  # same crops
    assert "cached ranges" in caplog.text
    other = quantize_int8(fp32_onnx, tmp_path / "o.onnx", _frames(seed=5), tile=32, count=8, method="minmax")
    assert onnx.load(first).graph != onnx.load(other).graph  # other frames: calibrated afresh, not the cache
    assert len(list(fp32_onnx.parent.glob("*-minmax-*.calibration.json"))) == 2  # one per set of crops
    with pytest.raises(ValueError, match="2 minmax calibrations of .* on other frames"):  # which one is not known
        quantize_int8(fp32_onnx, tmp_path / "c.onnx", None, method="minmax")
    with pytest.raises(ValueError, match="calibration-frames"):
        quantize_int8(fp32_onnx, tmp_path / "c.onnx", None, method="entropy")
    named_before = cache.with_name(cache.name.rsplit("-", 1)[0] + ".calibration.json")  # without the crops' hash
    for path in fp32_onnx.parent.glob("*-minmax-*.calibration.json"):
        path.unlink() if path != cache else path.replace(named_before)
    legacy = quantize_int8(fp32_onnx, tmp_path / "d.onnx", None, method="minmax")  # an older cache still serves
    assert onnx.load(legacy).graph == onnx.load(first).graph


def test_a_damaged_calibration_cache_is_named_or_recalibrated(fp32_onnx, tmp_path, caplog):
    model = tmp_path / "x2.onnx"
    model.write_bytes(fp32_onnx.read_bytes())  # its own folder: no other test's caches
    first = quantize_int8(model, tmp_path / "a.onnx", _frames(), tile=32, count=8, method="minmax")
    cache = calibration_cache_path(model, "minmax", TileReader(_frames(), 32, 8).digest)
    cache.write_text(cache.read_text()[:40])  # cut short, as by a full disk or a copy stopped midway
    with pytest.raises(ValueError, match=f"{cache.name} cannot be read .*delete it and give the frames"):
        quantize_int8(model, tmp_path / "b.onnx", None, method="minmax")
    caplog.set_level(logging.WARNING, logger="fastgan.export.quantize")
    again = quantize_int8(model, tmp_path / "b.onnx", _frames(), tile=32, count=8, method="minmax")
    assert f"{cache} cannot be read" in caplog.text and "calibrating again" in caplog.text
    assert onnx.load(again).graph == onnx.load(first).graph  # the same crops: the same ranges as the first time
    assert quantize_int8(model, tmp_path / "c.onnx", None, method="minmax").is_file()  # the cache serves again
    with pytest.raises(ValueError, match="tile, count and batch ≥ 1, got 0"):
        TileReader(_frames(), 0)


def test_quantize_refuses_what_it_cannot_quantise(fp32_onnx, tmp_path):
    with pytest.raises(ValueError, match="method"):
        quantize_int8(fp32_onnx, tmp_path / "x.onnx", _frames(), method="mse")
    half = export_upscaler(SRResNet(2, 4, 1, False), tmp_path / "half.onnx", 2, 8, precision="fp16")
    with pytest.raises(ExportError, match="fp32 upscaler"):
        quantize_int8(half, tmp_path / "x.onnx", _frames())
    with pytest.raises(
        ValueError, match=r"at least 32×32; give larger frames or a smaller tile \(--calibration-tile\)"
    ):
        quantize_int8(fp32_onnx, tmp_path / "x.onnx", [np.zeros((3, 16, 16), np.float32)], tile=32, method="entropy")


@pytest.mark.parametrize(
    "frame, match",
    [
        (
            (np.ones((3, 48, 56)) * 200).astype(np.uint8),
            "uint8; give floats in .0, 1. .divide 8-bit frames by 255",
        ),
        (np.ones((48, 56, 3), np.float32), "expected \\(3, H, W\\) \\(channels last\\?"),
        (np.full((3, 48, 56), 200.0, np.float32), "outside \\[0, 1\\]"),
        (np.full((3, 48, 56), np.nan, np.float32), "non-finite"),
    ],
    ids=["uint8", "channels-last", "0-255 floats", "nan"],
)
def test_calibration_frames_in_another_form_than_the_models_input_are_refused(fp32_onnx, tmp_path, frame, match):
    """8-bit frames once calibrated ranges 255× too wide (int8 RMS error 0.59 against 0.002) and cached them."""
    caches = set(fp32_onnx.parent.glob("*.calibration.json"))
    with pytest.raises(ValueError, match=match):
        quantize_int8(fp32_onnx, tmp_path / "x.onnx", [*_frames(1), frame], tile=32, count=8, method="minmax")
    assert set(fp32_onnx.parent.glob("*.calibration.json")) == caches and not (tmp_path / "x.onnx").exists()
