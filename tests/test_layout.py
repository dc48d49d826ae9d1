"""The package's layout: sub-packages follow the data, and imports point one way only.

Layers, lowest first: the network (``model``); labels from probabilities (``postprocess``); files
(``io``: images, checkpoints and their metadata); inference; analysis (metrics, attention);
training; then the front ends. A module may import from its own sub-package and from lower layers.
Imports are read from the source (``ast``), relative ones resolved, so imports inside functions count too.
The engine imports its own modules relatively (``from ..io.checkpoint import ...``), the front ends absolutely.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_usema"
LAYERS = {
    "__init__": 0,
    "_checks": 0,
    "_help": 0,  # the texts of --help and of the tooltips
    "model": 1,
    "postprocess": 2,
    "io": 3,
    "inference": 4,
    "analysis": 5,
    "training": 6,
    "interop": 6,  # models out: ONNX graphs, BioImage.IO packages
    "benchmarks": 7,  # front ends: `usema bench`, napari's samples and widgets, the command line
    "_sample_data": 7,
    "_widgets": 8,
    "cli": 9,
}


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(module: str) -> set[str]:
    """The napari_usema modules that ``module`` imports, anywhere in its source."""
    path = PACKAGE.parent / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            # "from . import x" names a sub-module x, or a name of the package itself
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        found |= {n for n in names if n.split(".")[0] == "napari_usema"}
    return found


def test_every_module_sits_in_a_known_layer() -> None:
    unknown = sorted({layer_of(m) for m in module_names()} - set(LAYERS))
    assert not unknown, f"add these sub-packages to LAYERS (and README's map): {unknown}"


@pytest.mark.parametrize("module", module_names())
def test_imports_point_down_only(module: str) -> None:
    own = layer_of(module)
    upward = [target for target in imports_of(module) if layer_of(target) != own and LAYERS[layer_of(target)] >= LAYERS[own]]
    assert not upward, f"{module} ({own}) imports from the same or a higher layer: {upward}"


def test_no_import_cycles_between_modules() -> None:
    nodes = set(module_names())
    graph = {m: {t for t in imports_of(m) if t in nodes} for m in nodes}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_every_module_imports() -> None:
    engine = [m for m in module_names() if LAYERS[layer_of(m)] <= LAYERS["training"]]
    for name in engine:
        importlib.import_module(name)
    code = "import importlib\nfor m in %r: importlib.import_module(m)\n" % [m for m in module_names() if m not in engine]
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
