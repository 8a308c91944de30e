"""ONNX export: standard operators only, dynamic axes, onnxruntime equal to torch (eager and fused), metadata."""

from pathlib import Path

import onnx
import pytest
import torch

from fastgan.export.onnx_export import (
    BF16_OPSET,
    ExportError,
    error_vs_torch,
    export_generator,
    export_upscaler,
    onnxruntime_session,
    read_metadata,
)
from fastgan.models.hrgan import Generator
from fastgan.models.srgan import SRResNet
from fastgan.ops.backends import backend

STANDARD_OPS = {
    "Conv",
    "PRelu",
    "DepthToSpace",
    "Add",
    "Resize",
    "BatchNormalization",
    "Mul",
    "Relu",
    "Gemm",
    "MatMul",
    "Reshape",
    "Gather",
    "Tanh",
    "Unsqueeze",
    "Expand",
    "Concat",
    "Shape",
    "Slice",
    "Sub",
    "Div",
    "Constant",
    "Cast",
    "Sqrt",
    "Tile",
    "Transpose",
    "Identity",
    "Squeeze",
    "ConstantOfShape",
    "Range",
    "Where",
    "Equal",
    "Floor",
    "Flatten",
}


@pytest.fixture(scope="module")
def light_x2():
    torch.manual_seed(0)
    return SRResNet(2, channels=8, blocks=2, batch_norm=False, bicubic_skip=True).eval()


@pytest.fixture(scope="module")
def light_x2_onnx(light_x2, tmp_path_factory):
    return export_upscaler(light_x2, tmp_path_factory.mktemp("onnx") / "x2.onnx", scale=2, receptive_radius=12)


def test_upscaler_exports_standard_ops_with_dynamic_batch_and_size(light_x2_onnx):
    proto = onnx.load(light_x2_onnx)
    ops = {node.op_type for node in proto.graph.node}
    assert {"Conv", "PRelu", "DepthToSpace", "Resize"} <= ops <= STANDARD_OPS
    assert all(node.domain in ("", "ai.onnx") for node in proto.graph.node)
    (lr,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in lr.type.tensor_type.shape.dim]
    assert lr.name == "lr" and dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    assert read_metadata(light_x2_onnx) == {
        "fastgan.kind": "upscaler",
        "fastgan.scale": "2",
        "fastgan.receptive_radius": "12",
        "fastgan.precision": "fp32",
    }


@pytest.mark.parametrize("shape", [(1, 3, 17, 23), (3, 3, 40, 64)])
def test_onnxruntime_matches_torch_eager_and_fused(light_x2, light_x2_onnx, shape):
    lr = torch.rand(shape)
    assert error_vs_torch(light_x2_onnx, light_x2, {"lr": lr}) < 1e-5
    (onnx_out,) = onnxruntime_session(light_x2_onnx, ["CPUExecutionProvider"]).run(None, {"lr": lr.numpy()})
    with backend("fused-torch"), torch.no_grad():
        fused = light_x2(lr)
    torch.testing.assert_close(torch.from_numpy(onnx_out), fused, rtol=0, atol=1e-5)


def test_paper_x4_with_batch_norm_and_fp16_export(tmp_path):
    model = SRResNet(4, channels=8, blocks=1, batch_norm=True).eval()
    with torch.no_grad():  # non-trivial running statistics
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1), bn.running_var.uniform_(0.5, 2)
    path = export_upscaler(model, tmp_path / "x4.onnx", scale=4, receptive_radius=10)
    assert error_vs_torch(path, model, {"lr": torch.rand(2, 3, 12, 9)}) < 1e-5
    half = export_upscaler(model, tmp_path / "x4-fp16.onnx", scale=4, receptive_radius=10, precision="fp16")
    (graph_input,) = onnx.load(half).graph.input
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert error_vs_torch(half, model, {"lr": torch.rand(1, 3, 12, 9)}) < 2e-2
    assert next(model.parameters()).dtype == torch.float32  # exporting did not convert the caller's model


class _OwnUpscaler(torch.nn.Module):
    """A user's ×2 upscaler whose forward names its input x, not lr."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)

    def forward(self, x):
        return torch.nn.functional.pixel_shuffle(self.conv(x), 2)


def test_any_upscaler_exports_whatever_its_forward_calls_its_input(tmp_path):
    model = _OwnUpscaler().eval()
    path = export_upscaler(model, tmp_path / "own.onnx", scale=2, receptive_radius=1)
    for shape in ((1, 3, 7, 11), (3, 3, 20, 16)):  # dynamic batch and size
        assert error_vs_torch(path, model, {"lr": torch.rand(shape)}) < 1e-5


def test_bf16_exports_pass_the_checker_at_the_opset_with_bf16_convolutions(tmp_path):
    """bf16 files are TensorRT's (onnxruntime's CPU provider has no bf16 Conv): checked, typed, opset 22."""
    model = SRResNet(2, channels=8, blocks=1, batch_norm=False).eval()
    path = export_upscaler(model, tmp_path / "x2-bf16.onnx", scale=2, receptive_radius=10, precision="bf16")
    proto = onnx.load(path)
    assert [o.version for o in proto.opset_import if o.domain == ""] == [BF16_OPSET]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    assert read_metadata(path)["fastgan.precision"] == "bf16"
    generator = Generator(64, num_classes=5, z_dim=16, channels=16).eval()
    path = export_generator(generator, tmp_path / "g-bf16.onnx", 16, num_classes=5, resolution=64, precision="bf16")
    assert read_metadata(path)["fastgan.precision"] == "bf16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g-bf16.onnx", "x2-bf16.onnx"]  # no temporary files


def test_hrgan_generator_exports_with_dynamic_batch(tmp_path):
    generator = Generator(64, num_classes=5, z_dim=16, channels=16).eval()
    path = export_generator(generator, tmp_path / "g.onnx", z_dim=16, num_classes=5, resolution=64)
    for n in (1, 6):
        inputs = {"z": torch.randn(n, 16), "y": torch.arange(n) % 5}
        assert error_vs_torch(path, generator, inputs) < 1e-5
    assert read_metadata(path)["fastgan.kind"] == "generator"


def test_metadata_errors_say_what_to_do(tmp_path, light_x2_onnx):
    with pytest.raises(FileNotFoundError, match="fastgan.export onnx"):
        read_metadata(tmp_path / "missing.onnx")
    (tmp_path / "corrupt.onnx").write_bytes(light_x2_onnx.read_bytes()[:200])
    with pytest.raises(ExportError, match="export it again"):
        read_metadata(tmp_path / "corrupt.onnx")
    foreign = onnx.load(light_x2_onnx)
    del foreign.metadata_props[:]
    onnx.save(foreign, tmp_path / "foreign.onnx")
    with pytest.raises(ExportError, match="not written by fastgan"):
        read_metadata(tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match="int8"):
        export_upscaler(torch.nn.Identity(), tmp_path / "x.onnx", 1, 0, precision="int8")


def test_upscaler_export_refuses_a_wrong_scale_or_radius(tmp_path):
    """A ×2 model exported as ×4 was once written, loaded as ×4 and failed in the tiles' blend with a bare size
    error; a negative radius was written too."""
    model = SRResNet(2, channels=4, blocks=1, batch_norm=False)
    with pytest.raises(ExportError, match=r"into \(2, 3, 64, 70\), not \(2, 3, 128, 140\): it is not a ×4"):
        export_upscaler(model, tmp_path / "x.onnx", 4, 8)
    with pytest.raises(ValueError, match="receptive_radius must be a non-negative integer"):
        export_upscaler(model, tmp_path / "x.onnx", 2, -3)
    assert not list(tmp_path.iterdir())


def test_export_cli_writes_the_hrgan_generator_of_a_run(tiny_config):
    from fastgan.export import __main__ as export_cli
    from fastgan.train.run import train

    train(tiny_config)
    run = tiny_config.output.out_dir
    assert export_cli.main(["onnx", "--checkpoint", str(run)]) == 0
    meta = read_metadata(f"{run}/export/generator-fp32.onnx")
    assert meta["fastgan.kind"] == "generator" and meta["fastgan.resolution"] == "64" and meta["fastgan.z_dim"] == "32"
    assert export_cli.main(["onnx", "--checkpoint", str(run), "--precision", "int8"]) == 1  # upscalers only


def test_the_file_depends_on_the_model_alone(light_x2, light_x2_onnx, tmp_path):
    """The exporter records each node's Python stack (absolute paths, line numbers); they are dropped, so the bytes
    (the key of cached TensorRT engines and int8 ranges) do not change with the install location or unrelated
    edits, and no local path ships in the file."""
    import fastgan

    again = export_upscaler(light_x2, tmp_path / "again.onnx", scale=2, receptive_radius=12)
    assert again.read_bytes() == light_x2_onnx.read_bytes()
    package = str(Path(fastgan.__file__).parent).encode()
    assert package not in again.read_bytes() and b"pkg.torch.onnx" not in again.read_bytes()  # no stack metadata
