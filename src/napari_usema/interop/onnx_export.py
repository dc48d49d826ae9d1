"""A USEMA checkpoint as an ONNX graph of dynamic batch, height and width, and its check.

The graph is made by ``torch.onnx.export`` through ``torch.export`` (the dynamo exporter): the legacy
tracer bakes the example's height and width into every reshape of the window attention. Height and
width are free in steps of :func:`size_step` pixels: the windows of every attention stage then tile the
grid without padding, so no branch of the graph depends on the image size. The tiler's tiles (256 px
by default) are such sizes.

Inputs are the normalised image ``(B, in_channels, H, W)`` float32 (``image``); outputs the logits
``(B, out_channels, H, W)`` (``logits``), as ``USEMA.forward`` returns them. :func:`check_onnx` runs the
graph in ONNX Runtime beside PyTorch at two sizes and gives the largest difference.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io.checkpoint import LoadedModel
from ..io.outputs import atomic_write

OPSET = 18
TOLERANCE = 1e-4  # the largest difference to PyTorch fp32 that check_onnx accepts


def size_step(config) -> int:
    """The height and width of the graph's input are multiples of this: ``window_size`` tokens at the
    deepest stage that has windows below the bottleneck (``2 ** (stages - 2)`` pixels a token there), and
    at least the network's own divisor."""
    return max(config.divisor, 2 ** max(config.num_stages - 2, 0) * config.window_size)


class _Logits(nn.Module):
    """``USEMA.forward(x)`` alone: the exporter passes positional arguments only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


def export_onnx(loaded: LoadedModel, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``loaded``'s network as ONNX to ``out``, whole or not at all; returns the path.

    Raises:
        OutputExistsError: ``out`` exists and not ``overwrite``.
        ImportError: ``onnx`` / ``onnxscript`` are not installed (``pip install "napari-usema[export]"``).
    """
    _need("onnx", "onnxscript")
    from torch.export import Dim

    config = loaded.metadata.config
    step = size_step(config)
    # A copy, on the CPU in fp32: the network another thread may be running is never touched.
    network = _Logits(copy.deepcopy(loaded.model).cpu().float()).eval()
    example = torch.zeros(2, config.in_channels, 2 * step, 2 * step)  # batch 2: torch.export fixes sizes of 1
    rows, cols = Dim("rows", min=1, max=1024), Dim("cols", min=1, max=1024)
    shapes = {"image": {0: Dim("batch", min=1, max=1024), 2: step * rows, 3: step * cols}}
    with atomic_write(out, overwrite=overwrite) as tmp, torch.no_grad():
        program = torch.onnx.export(
            network, (example,), input_names=["image"], output_names=["logits"], dynamic_shapes=shapes, dynamo=True,
            opset_version=OPSET, verbose=False,
        )  # fmt: skip
        program.save(str(tmp))
    return Path(out)


def check_onnx(loaded: LoadedModel, path: str | Path, seed: int = 0) -> float:
    """The largest absolute difference between ONNX Runtime and PyTorch on random inputs of two sizes
    (one and two size steps high, two and one wide; batches of 2 and 1)."""
    _need("onnxruntime")
    import onnxruntime

    config = loaded.metadata.config
    step = size_step(config)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    network = _Logits(copy.deepcopy(loaded.model).cpu().float()).eval()
    worst = 0.0
    for shape in ((2, config.in_channels, step, 2 * step), (1, config.in_channels, 2 * step, step)):
        x = torch.randn(*shape, generator=generator)
        with torch.no_grad():
            expected = network(x).numpy()
        got = session.run(["logits"], {"image": x.numpy()})[0]
        if got.shape != expected.shape:
            raise ValueError(f"the ONNX graph gave {got.shape} for an input {tuple(shape)}; PyTorch {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def missing_modules(*modules: str) -> list[str]:
    """Those of ``modules`` (dotted names allowed) that are not installed."""
    import importlib.util

    def present(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent package of a dotted name is missing
            return False

    return [m for m in modules if not present(m)]


def _need(*modules: str) -> None:
    if missing := missing_modules(*modules):
        raise ImportError(f'exporting needs {", ".join(missing)}: pip install "napari-usema[export]"')
