"""A USEMA checkpoint as a TorchScript network for tiles of one fixed size, and its check.

TorchScript cannot script USEMA (keyword-only arguments, instrumentation callbacks), and a trace records
the example's height and width as constants wherever the network does arithmetic on them in Python (the
padding masks, the window grid). So the trace is kept to the size it was made at: it is wrapped in a
small scripted module that refuses any other height or width with a message naming the size, instead of
returning a wrong answer. The batch stays free; the device is the CPU (the trace records it). Tools
that tile (deepImageJ, QuPath, the tiler here) run it tile by tile; for free sizes use the ONNX graph (:mod:`.onnx_export`).

Input: the normalised image ``(B, in_channels, tile, tile)`` float32; output: the logits
``(B, out_channels, tile, tile)``, as ``USEMA.forward`` returns them.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..io.checkpoint import LoadedModel
from ..io.outputs import atomic_write
from .onnx_export import _Logits

TOLERANCE = 1e-5  # a trace runs the same kernels as eager PyTorch: only summation order may differ


class _FixedSize(nn.Module):
    """The traced network behind a check of the tile size (scripted, so the check travels in the file)."""

    def __init__(self, traced: nn.Module, channels: int, tile: int) -> None:
        super().__init__()
        self.traced = traced
        self.channels = channels
        self.tile = tile

    def forward(self, image: Tensor) -> Tensor:
        if image.dim() != 4 or image.shape[1] != self.channels or image.shape[2] != self.tile or image.shape[3] != self.tile:
            raise ValueError(
                "this TorchScript network takes tiles of shape (B, "
                + str(self.channels)
                + ", "
                + str(self.tile)
                + ", "
                + str(self.tile)
                + "); got "
                + str(image.shape)
            )
        return self.traced(image)


def export_torchscript(loaded: LoadedModel, out: str | Path, *, tile: int = 256, overwrite: bool = False) -> Path:
    """Write ``loaded``'s network as TorchScript for ``(B, C, tile, tile)`` inputs, whole or not at all.

    Raises:
        ValueError: ``tile`` is not a positive multiple of the network's divisor.
        OutputExistsError: ``out`` exists and not ``overwrite``.
    """
    config = loaded.metadata.config
    if tile <= 0 or tile % config.divisor:
        raise ValueError(f"--tile must be a positive multiple of {config.divisor} for this model, got {tile}")
    # A copy, on the CPU in fp32: the network another thread may be running is never touched.
    network = _Logits(copy.deepcopy(loaded.model).cpu().float()).eval()
    example = torch.zeros(2, config.in_channels, tile, tile)
    with warnings.catch_warnings(), torch.no_grad():
        # torch deprecates TorchScript in favour of torch.export; tools that read BioImage.IO packages
        # still run it. The tracer's warnings about Python values are what _FixedSize guards against.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(network, example, check_trace=False)
        guarded = torch.jit.script(_FixedSize(traced, config.in_channels, tile))
    with atomic_write(out, overwrite=overwrite) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        torch.jit.save(guarded, str(tmp))
    return Path(out)


def check_torchscript(loaded: LoadedModel, path: str | Path, seed: int = 0) -> tuple[int, float]:
    """Load the file back and run it beside PyTorch on random tiles (batches of 1 and 3).

    Returns ``(tile, largest absolute difference)``. Raises ``ValueError`` if the file does not refuse a
    tile of another size (a trace that would silently run at the wrong size).
    """
    config = loaded.metadata.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        scripted = torch.jit.load(str(path), map_location="cpu")
    tile = int(scripted.tile)
    network = _Logits(copy.deepcopy(loaded.model).cpu().float()).eval()
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for batch in (1, 3):
            x = torch.randn(batch, config.in_channels, tile, tile, generator=generator)
            expected, got = network(x), scripted(x)
            if got.shape != expected.shape:
                raise ValueError(f"TorchScript gave {tuple(got.shape)} for {tuple(x.shape)}; PyTorch {tuple(expected.shape)}")
            worst = max(worst, float((got - expected).abs().max()))
        try:
            scripted(torch.zeros(1, config.in_channels, tile, tile + config.divisor))
        except Exception as error:  # torch.jit.Error: the guard's message
            if "takes tiles of shape" not in str(error):
                raise
        else:
            raise ValueError("the TorchScript file ran a tile of another size: it must refuse it")
    return tile, worst
