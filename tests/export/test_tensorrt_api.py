"""Every TensorRT name our code uses exists in TensorRT's own Python bindings, and no removed API creeps in.

TensorRT cannot be installed here, but the `tensorrt_cu12_bindings` wheel's extension module (which cannot load
without libnvinfer) carries the names pybind11 registers: every class, enum value, method, property and keyword as a
NUL-terminated literal. The linker merges literals that end another one, so ``INPUT`` lives at the end of
``ATTENTION_INPUT``: a name is "in TensorRT" when ``name\\0`` occurs in the file. Plain identifier tokens would not
do: the docstrings mention removed names mid-sentence (``FP16``, ``max_workspace_size``).

The names our code uses are collected by an AST walk over our TensorRT modules: attribute chains and keyword
arguments rooted at the `tensorrt` module (bound by ``import tensorrt`` or returned by a function such as
`import_tensorrt`) or at a variable, ``self.`` attribute or parameter that holds a TensorRT object, found by forward
data flow within each function and class, through calls, returns and tuple unpacking, to a fixed point.
"""

from __future__ import annotations

import ast
import site
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastgan.export

TRT_MODULES = ("tensorrt_build.py", "tensorrt_runtime.py", "cuda_buffers.py")
#: APIs that TensorRT 10 removed or TensorRT 11 dropped with weak typing (the FP16/INT8 builder flags and int8
#: calibrators): absent from our code and from the 11.4 bindings.
REMOVED = (
    "build_engine",
    "max_workspace_size",
    "get_binding_index",
    "get_binding_name",
    "get_binding_shape",
    "set_binding_shape",
    "binding_is_input",
    "num_bindings",
    "execute_async_v2",
    "EXPLICIT_BATCH",
    "FP16",
    "int8_calibrator",
    "IInt8Calibrator",
    "IInt8EntropyCalibrator2",
    "platform_has_fast_fp16",
    "platform_has_fast_int8",
)
#: Names the modules must use (so the walk cannot pass by seeing nothing).
ESSENTIAL = (
    "Builder",
    "create_network",
    "NetworkDefinitionCreationFlag",
    "STRONGLY_TYPED",
    "OnnxParser",
    "parse_from_file",
    "set_memory_pool_limit",
    "create_optimization_profile",
    "set_timing_cache",
    "ignore_mismatch",
    "build_serialized_network",
    "Runtime",
    "deserialize_cuda_engine",
    "get_tensor_mode",
    "set_input_shape",
    "set_tensor_address",
    "execute_async_v3",
)

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@pytest.fixture(scope="module")
def bindings() -> bytes:
    for root in site.getsitepackages():
        path = Path(root) / "tensorrt_bindings" / "tensorrt.so"
        if path.is_file():
            return path.read_bytes()
    pytest.skip("tensorrt_cu12_bindings is not installed (pip install tensorrt-cu12-bindings; it is in the dev extra)")


def in_tensorrt(name: str, bindings: bytes) -> bool:
    return name.isidentifier() and name.encode() + b"\0" in bindings


def _nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of one scope, not descending into nested functions or classes (their own scopes)."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _self_attribute(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


def _base(node: ast.AST) -> tuple[str | None, bool]:
    """Where an expression's attribute/call/subscript chain starts: (``name`` or ``self.attr``, whether that base is
    itself called, as in ``make()`` or ``self.make()``)."""
    while True:
        if attribute := _self_attribute(node):
            return attribute, False
        if isinstance(node, ast.Call):
            callee = _self_attribute(node.func) or (node.func.id if isinstance(node.func, ast.Name) else None)
            if callee:
                return callee, True
            node = node.func
        elif isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Name):
            return node.id, False
        else:
            return None, False


class _Scope:
    """A module or function: its own names holding TensorRT objects; a function also sees its module's."""

    def __init__(self, node: ast.AST, owner: str | None, module: _Scope | None):
        self.node, self.owner, self.module, self.tracked = node, owner, module, set()


class TensorRTUse:
    """The data-flow walk over a set of modules' sources (see the module docstring)."""

    def __init__(self, sources: list[str]):
        self.scopes: list[_Scope] = []
        self.functions: dict[tuple[str | None, str], list[_Scope]] = {}  # (class or None, name) → definitions
        self.class_tracked: dict[str, set[str]] = {}  # class → its self.attributes holding TensorRT objects
        self.returns: dict[str, bool | tuple[bool, ...]] = {}  # function name → what its calls return
        self.imported: set[str] = set()  # names imported from tensorrt
        for source in sources:
            self._add_scopes(ast.parse(source), None, None)
        while self._propagate():
            pass

    def _add_scopes(self, node: ast.AST, owner: str | None, module: _Scope | None) -> None:
        if not isinstance(node, ast.ClassDef):
            scope = _Scope(node, owner, module)
            self.scopes.append(scope)
            module = module or scope
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.functions.setdefault((owner, node.name), []).append(scope)
        for child in _nodes(node):
            if isinstance(child, ast.ClassDef):
                self.class_tracked.setdefault(child.name, set())
                for member in child.body:
                    if isinstance(member, _SCOPES):
                        self._add_scopes(member, child.name, module)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                self._add_scopes(child, None, module)

    def _known(self, scope: _Scope, token: str) -> bool:
        if token.startswith("self."):
            return token in self.class_tracked.get(scope.owner, set())
        return token in scope.tracked or (scope.module is not None and token in scope.module.tracked)

    def value(self, scope: _Scope, node: ast.AST | None) -> bool | tuple[bool, ...]:
        """Whether `node` evaluates to a TensorRT object (for a tuple, which of its elements do)."""
        if isinstance(node, ast.Tuple):
            return tuple(self.value(scope, element) is True for element in node.elts)
        token, called = _base(node) if node is not None else (None, False)
        if token is None:
            return False
        if called:
            return self.returns.get(token.removeprefix("self."), False)
        return self._known(scope, token)

    def _bind(self, scope: _Scope, target: ast.AST, value: bool | tuple[bool, ...]) -> bool:
        if isinstance(target, ast.Tuple) and isinstance(value, tuple) and len(value) == len(target.elts):
            return any([self._bind(scope, element, part) for element, part in zip(target.elts, value, strict=True)])
        token = _self_attribute(target) or (target.id if isinstance(target, ast.Name) else None)
        if value is not True or token is None or self._known(scope, token):
            return False
        (self.class_tracked[scope.owner] if token.startswith("self.") else scope.tracked).add(token)
        return True

    def _callees(self, scope: _Scope, call: ast.Call) -> list[tuple[_Scope, int]]:
        """Definitions a call may reach, each with how many leading parameters the call does not pass (self)."""
        if isinstance(call.func, ast.Name):
            return [(callee, 0) for callee in self.functions.get((None, call.func.id), [])]
        if method := _self_attribute(call.func):
            return [(callee, 1) for callee in self.functions.get((scope.owner, method.removeprefix("self.")), [])]
        return []

    def _propagate(self) -> bool:
        changed = False
        for scope in self.scopes:
            for node in _nodes(scope.node):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    changed |= self._import(scope, node)
                elif isinstance(node, ast.Assign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    value = self.value(scope, node.value)
                    changed |= any([self._bind(scope, target, value) for target in targets])
                elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                    changed |= self._bind(scope, node.optional_vars, self.value(scope, node.context_expr))
                elif isinstance(node, ast.Return) and isinstance(scope.node, ast.FunctionDef | ast.AsyncFunctionDef):
                    changed |= self._returns(scope.node.name, self.value(scope, node.value))
                elif isinstance(node, ast.Call):
                    changed |= self._pass_arguments(scope, node)
        return changed

    def _import(self, scope: _Scope, node: ast.Import | ast.ImportFrom) -> bool:
        if isinstance(node, ast.ImportFrom):
            if node.module != "tensorrt":
                return False
            self.imported |= {alias.name for alias in node.names}
            names = [alias.asname or alias.name for alias in node.names]
        else:
            names = [alias.asname or alias.name for alias in node.names if alias.name == "tensorrt"]
        new = set(names) - scope.tracked
        scope.tracked |= new
        return bool(new)

    def _returns(self, function: str, value: bool | tuple[bool, ...]) -> bool:
        old = self.returns.get(function, False)
        if isinstance(value, tuple) and isinstance(old, tuple) and len(value) == len(old):
            value = tuple(a or b for a, b in zip(old, value, strict=True))
        elif old is True or not (value is True or (isinstance(value, tuple) and any(value))):
            return False
        self.returns[function] = value
        return value != old

    def _pass_arguments(self, scope: _Scope, call: ast.Call) -> bool:
        changed = False
        for callee, skipped in self._callees(scope, call):
            parameters = [argument.arg for argument in callee.node.args.args][skipped:]
            passed = list(zip(parameters, call.args, strict=False))
            passed += [(keyword.arg, keyword.value) for keyword in call.keywords if keyword.arg in parameters]
            for parameter, argument in passed:
                if self.value(scope, argument) is True and parameter not in callee.tracked:
                    callee.tracked.add(parameter)
                    changed = True
        return changed

    def names(self) -> set[str]:
        """Attribute names and keyword argument names used on TensorRT objects, plus names imported from it."""
        used = set(self.imported)
        for scope in self.scopes:
            for node in _nodes(scope.node):
                if (
                    isinstance(node, ast.Attribute)
                    and not _self_attribute(node)
                    and self.value(scope, node.value) is True
                ):
                    used.add(node.attr)
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    if not _self_attribute(node.func) and self.value(scope, node.func.value) is True:
                        used |= {keyword.arg for keyword in node.keywords if keyword.arg}
        return used


@pytest.fixture(scope="module")
def used() -> set[str]:
    folder = Path(fastgan.export.__file__).parent
    return TensorRTUse([(folder / name).read_text() for name in TRT_MODULES]).names()


def test_every_tensorrt_name_we_use_exists_in_tensorrt(used, bindings):
    assert set(ESSENTIAL) <= used, sorted(set(ESSENTIAL) - used)
    assert len(used) >= 30, sorted(used)  # the walk really sees the code
    missing = sorted(name for name in used if not in_tensorrt(name, bindings))
    assert not missing, f"not in TensorRT's bindings: {missing}"


def test_removed_apis_are_absent_from_our_code_and_from_tensorrt(used, bindings):
    assert not used & set(REMOVED)
    assert "BuilderFlag" not in used  # precision comes from the strongly typed ONNX file, never from builder flags
    assert [name for name in REMOVED if in_tensorrt(name, bindings)] == []  # the table tells them apart...
    assert all(in_tensorrt(name, bindings) for name in ("INPUT", "HALF", "BF16", "BuilderFlag"))  # ...from these


def test_the_walk_follows_objects_made_by_tensorrt():
    source = """
import tensorrt as trt

def load():
    import tensorrt
    return tensorrt

def make(logger):
    builder = load().Builder(logger)
    return builder.create_network(0), 7

def fill(network, count):
    network.mark_output(count.bit_length())

def build():
    network, count = make(None)
    fill(network, count)
    with trt.Runtime(None) as runtime:
        runtime.deserialize_cuda_engine(b"", strict=True)

def unrelated(network):
    network.not_tensorrt()

class Engine:
    def __init__(self):
        self.context = trt.Runtime(None).create_execution_context()
        self.path = make_path()

    def run(self):
        self.context.execute_async_v3(0)
        self.path.exists()
"""
    assert TensorRTUse([source]).names() == {
        "Builder",
        "create_network",
        "mark_output",
        "Runtime",
        "deserialize_cuda_engine",
        "strict",
        "create_execution_context",
        "execute_async_v3",
    }
