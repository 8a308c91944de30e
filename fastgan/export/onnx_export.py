"""Export trained networks to ONNX with dynamic axes, and check the file in onnxruntime against torch.

Upscalers (SRResNet/SRGAN): input ``lr`` (N, 3, h, w) → output ``sr`` (N, 3, s·h, s·w), batch and both spatial
axes dynamic. HRGAN generators: inputs ``z`` (N, z_dim) and ``y`` (N,) int64 → ``image`` (N, 3, R, R), batch
dynamic. The fused ops export through their eager references (the "torch" ops backend), so the graph holds only
standard ONNX operators (Conv, PRelu, DepthToSpace, Resize, ...) that onnxruntime and TensorRT run natively.
What tiling and the runtimes need to know travels in the file's metadata (`read_metadata`).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from fastgan.atomic import atomic_path
from fastgan.ops.backends import backend

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
UPSCALER_INPUT, UPSCALER_OUTPUT = "lr", "sr"
OPSET = 18  # what onnxruntime and TensorRT 10.0+ parse
#: bf16 convolutions exist in ONNX from opset 22 (Conv-22); bf16 files are for TensorRT, which parses it from 10.x.
BF16_OPSET = 22


class ExportError(RuntimeError):
    pass


def _dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown ONNX precision {precision!r}; choose {', '.join(PRECISIONS)} (int8: fastgan.export.quantize)"
        )
    return PRECISIONS[precision]


def _drop_source_locations(proto: onnx.ModelProto) -> None:
    """Remove what the exporter records of the Python source behind each node (stack traces with absolute paths
    and line numbers, in node metadata and doc strings): the file's bytes, and so its hash — the key of cached
    TensorRT engines and int8 calibrations — then depend on the model alone, not on where fastgan is installed or
    on unrelated edits, and no local paths ship in it."""
    graphs = [proto.graph, *(function for function in proto.functions)]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attribute in node.attribute:  # the bodies of If, Loop, Scan
                graphs.extend([attribute.g] if attribute.HasField("g") else attribute.graphs)
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info, *proto.graph.initializer):
        del value.metadata_props[:]


def _export(model: nn.Module, args: tuple, path: Path, names: tuple[list[str], list[str]], dynamic: tuple, meta: dict):
    """torch.onnx.export (dynamo), metadata added, checked, then written atomically (`fastgan.atomic.atomic_path`).
    `dynamic` holds one dynamic-axes dict per argument, by position: any name the model's forward gives them works."""
    bf16 = meta["fastgan.precision"] == "bf16"
    with backend("torch"), torch.no_grad():
        program = torch.onnx.export(
            model,
            args,
            input_names=names[0],
            output_names=names[1],
            dynamic_shapes=dynamic,
            opset_version=BF16_OPSET if bf16 else OPSET,
            # onnxscript's graph optimiser (0.7.2) turns the bf16 weights that reach a Conv through an op's reference
            # path into fp32 initialisers, which the checker rejects: bf16 graphs go unoptimised, TensorRT fuses
            optimize=not bf16,
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    _drop_source_locations(proto)
    onnx.helper.set_model_props(proto, {key: str(value) for key, value in meta.items()})
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(path) as temporary:
        onnx.save_model(proto, temporary)
    return Path(path)


def export_upscaler(
    model: nn.Module,
    path: str | Path,
    scale: int,
    receptive_radius: int,
    precision: str = "fp32",
) -> Path:
    """Write `model` ((N, 3, h, w) → (N, 3, s·h, s·w)) as ONNX with dynamic N, h, w, in `precision` (fp32, fp16 or
    bf16: weights and I/O in that type; TensorRT builds strongly typed engines from it). `scale` and
    `receptive_radius` go into the file's metadata for the tiled upscaler; the scale is checked on an example.
    Not compared with torch here: `error_vs_torch` does that (`python -m fastgan.export` refuses files beyond its
    tolerance)."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if isinstance(receptive_radius, bool) or not isinstance(receptive_radius, int) or receptive_radius < 0:
        raise ValueError(
            f"receptive_radius must be a non-negative integer (fastgan.upscale.receptive_field.receptive_radius "
            f"measures it), got {receptive_radius!r}"
        )
    dtype = _dtype(precision)
    model = copy.deepcopy(model).to("cpu", dtype).eval()
    example = torch.rand(2, 3, 32, 35, dtype=dtype)
    with backend("torch"), torch.no_grad():
        produced = tuple(model(example).shape)
    if produced != (2, 3, 32 * scale, 35 * scale):
        raise ExportError(
            f"the model turns (2, 3, 32, 35) into {produced}, not (2, 3, {32 * scale}, {35 * scale}): it is not a "
            f"×{scale} RGB upscaler; give the scale it was trained for"
        )
    batch, height, width = (torch.export.Dim(n, min=1, max=8192) for n in ("batch", "height", "width"))
    meta = {
        "fastgan.kind": "upscaler",
        "fastgan.scale": scale,
        "fastgan.receptive_radius": receptive_radius,
        "fastgan.precision": precision,
    }
    return _export(
        model,
        (example,),
        path,
        ([UPSCALER_INPUT], [UPSCALER_OUTPUT]),
        ({0: batch, 2: height, 3: width},),
        meta,
    )


def export_generator(
    generator: nn.Module, path: str | Path, z_dim: int, num_classes: int, resolution: int, precision: str = "fp32"
) -> Path:
    """Write an HRGAN generator (z (N, z_dim), y (N,) int64 → (N, 3, R, R) in [-1, 1]) as ONNX with dynamic N; its
    conditional batch norms use their running statistics (eval mode)."""
    dtype = _dtype(precision)
    generator = copy.deepcopy(generator).to("cpu", dtype).eval()
    z, y = torch.randn(2, z_dim, dtype=dtype), torch.arange(2) % num_classes
    batch = torch.export.Dim("batch", min=1, max=4096)
    meta = {
        "fastgan.kind": "generator",
        "fastgan.z_dim": z_dim,
        "fastgan.num_classes": num_classes,
        "fastgan.resolution": resolution,
        "fastgan.precision": precision,
    }
    return _export(generator, (z, y), path, (["z", "y"], ["image"]), ({0: batch}, {0: batch}), meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The `fastgan.*` metadata an export wrote (without loading the weights)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}; write one with `python -m fastgan.export onnx`")
    try:
        proto = onnx.load_model(path, load_external_data=False)
    except Exception as error:  # protobuf raises several types for truncated or foreign files
        raise ExportError(f"{path} is not a readable ONNX file ({error}); export it again") from error
    meta = {p.key: p.value for p in proto.metadata_props if p.key.startswith("fastgan.")}
    if "fastgan.kind" not in meta:
        raise ExportError(f"{path} was not written by fastgan.export (no fastgan.* metadata); export it with it")
    return meta


CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"


def onnxruntime_providers(device: str = "auto") -> list:
    """onnxruntime execution providers for `device`: "cpu" → the CPU's; "cuda" or "cuda:N" → CUDA on GPU N (0 for
    "cuda"), then the CPU's for operators CUDA lacks; "auto" → CUDA on GPU 0 when this onnxruntime has it, else CPU.

    Raises:
        ValueError: an unknown device, or CUDA asked of an onnxruntime without its CUDA provider.
    """
    import onnxruntime as ort

    if device == "auto":
        return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in ort.get_available_providers() else [CPU_PROVIDER]
    try:
        target = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r} for onnxruntime: use auto, cpu, cuda or cuda:N") from error
    if target.type == "cpu":
        return [CPU_PROVIDER]
    if target.type != "cuda":
        raise ValueError(f"onnxruntime runs on cpu or cuda[:N], not {device!r}")
    if CUDA_PROVIDER not in ort.get_available_providers():
        raise ValueError(
            f"{device} asked for, but this onnxruntime has no CUDA execution provider: pip install onnxruntime-gpu "
            "(in place of onnxruntime), or use --device cpu"
        )
    return [(CUDA_PROVIDER, {"device_id": target.index or 0}), CPU_PROVIDER]


def onnxruntime_device(device: str) -> str:
    """The device for onnxruntime beside a torch model on `device`: the same one where this onnxruntime has a CUDA
    provider, else "cpu" (plain onnxruntime runs only there) for any device but "auto"."""
    import onnxruntime as ort

    if device == "auto" or device == "cpu" or CUDA_PROVIDER in ort.get_available_providers():
        return device
    log.info("onnxruntime has no CUDA provider here (pip install onnxruntime-gpu): its files run on the CPU")
    return "cpu"


def onnxruntime_session(path: str | Path, providers: list | None = None, device: str = "auto"):
    """An onnxruntime InferenceSession for `path` on `device` (`onnxruntime_providers`), or on explicit `providers`.

    Raises:
        RuntimeError: onnxruntime cannot load the file (a graph it cannot run), or CUDA was asked for but
            onnxruntime could not start it (it falls back to the CPU with only a printed warning: mismatched CUDA
            or cuDNN libraries, or no GPU visible).
    """
    import onnxruntime as ort

    providers = providers or onnxruntime_providers(device)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # onnxruntime's error types (Fail, InvalidGraph, ...) derive from Exception
        raise RuntimeError(f"onnxruntime cannot load {path}: {error}") from error
    asked_cuda = device != "auto" and any((p if isinstance(p, str) else p[0]) == CUDA_PROVIDER for p in providers)
    if asked_cuda and CUDA_PROVIDER not in session.get_providers():
        raise RuntimeError(
            f"onnxruntime could not start its CUDA provider for {device} and fell back to the CPU (see its warning "
            "above: no such GPU, none visible, or CUDA/cuDNN libraries that do not match onnxruntime-gpu's); fix "
            "that, or use --device cpu"
        )
    return session


ONNX_TO_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


def error_vs_torch(
    path: str | Path, model: nn.Module, inputs: dict[str, torch.Tensor], statistic: str = "max"
) -> float:
    """max (or, with `statistic` "rms", root-mean-square) |onnxruntime(path) − model(*inputs)| on CPU, the fused ops
    on their eager references; the inputs are cast to the file's input types for onnxruntime (so an fp16 file is
    measured against the fp32 model)."""
    session = onnxruntime_session(path, ["CPUExecutionProvider"])
    types = {i.name: ONNX_TO_NUMPY[i.type] for i in session.get_inputs()}
    (onnx_out,) = session.run(None, {name: value.numpy().astype(types[name]) for name, value in inputs.items()})
    with backend("torch"), torch.no_grad():
        torch_out = model.eval()(*inputs.values()).float().numpy()
    difference = np.abs(onnx_out.astype(np.float64) - torch_out)
    return float(difference.max() if statistic == "max" else np.sqrt(np.mean(difference**2)))
