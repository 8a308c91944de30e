"""Every TensorRT name our code uses exists in TensorRT's own Python bindings (TensorRT cannot be installed here,
but the `tensorrt_cu12_bindings` wheel's extension module lists its API), so removed APIs cannot creep in."""

import ast
import site
from pathlib import Path

import pytest

import fastgan.export

TRT_MODULES = ("tensorrt_build.py", "tensorrt_runtime.py")
#: APIs TensorRT 10 removed or TensorRT 11 dropped (weak typing): none may appear in our code.
REMOVED = {
    "build_engine",
    "max_workspace_size",
    "get_binding_index",
    "execute_async_v2",
    "set_binding_shape",
    "get_binding_shape",
    "num_bindings",
    "binding_is_input",
    "int8_calibrator",
    "IInt8EntropyCalibrator2",
    "platform_has_fast_fp16",
    "EXPLICIT_BATCH",
}


def _bindings() -> bytes:
    for root in site.getsitepackages():
        path = Path(root) / "tensorrt_bindings" / "tensorrt.so"
        if path.is_file():
            return path.read_bytes()
    pytest.skip("tensorrt_cu12_bindings is not installed (it is in the dev extra)")


def _root(node: ast.AST) -> str | None:
    """The name an attribute chain starts from: `trt` for trt.Builder(...).x, `self.engine` for self.engine.y."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return f"self.{node.attr}"
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _target(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


def tensorrt_names(source: str) -> set[str]:
    """Attribute names used on TensorRT objects: chains rooted at `trt` (bound by `import tensorrt` or by
    `trt = import_tensorrt()`) or at a variable / self attribute assigned from such a chain."""
    tree = ast.parse(source)
    tracked = {"trt"}
    changed = True
    while changed:  # forward data flow to a fixed point: x = <trt object>... makes x a trt object
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _root(node.value) in tracked:
                for target in node.targets:
                    name = _target(target)
                    if name and name not in tracked:
                        tracked.add(name)
                        changed = True
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _root(node) in tracked:
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                names.add(node.attr)
    return names - {"buffers", "stream", "ptr", "shape", "dtype"}  # our own DeviceBuffers / DeviceArray fields


@pytest.fixture(scope="module")
def used() -> set[str]:
    folder = Path(fastgan.export.__file__).parent
    return set().union(*(tensorrt_names((folder / name).read_text()) for name in TRT_MODULES))


def test_every_tensorrt_name_we_use_exists_in_tensorrt(used):
    bindings = _bindings()
    assert {
        "build_serialized_network",
        "execute_async_v3",
        "set_input_shape",
        "create_optimization_profile",
        "STRONGLY_TYPED",
        "set_memory_pool_limit",
        "deserialize_cuda_engine",
    } <= used
    assert len(used) >= 30, sorted(used)  # the walk really sees the code
    missing = sorted(name for name in used if name.encode() + b"\0" not in bindings)
    assert not missing, f"not in TensorRT's bindings: {missing}"


def test_removed_apis_are_absent_from_our_code_and_from_tensorrt(used):
    bindings = _bindings()
    assert not used & REMOVED
    assert not [name for name in REMOVED if name.encode() + b"\0" in bindings]  # the check can tell them apart


def test_the_walk_follows_objects_made_by_tensorrt():
    source = "import tensorrt as trt\nb = trt.Builder(x)\nn = b.create_network(0)\nn.mark_output(y)\nz.ignored()\n"
    assert tensorrt_names(source) == {"Builder", "create_network", "mark_output"}
