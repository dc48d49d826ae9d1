"""Shared fixtures: a tiny trained-from-scratch checkpoint, and the real data when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_usema.io.checkpoint import save_checkpoint
from napari_usema.io.metadata import CheckpointMetadata
from napari_usema.model import build_model, preset

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def own_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The widget's remembered model choices go to a folder of the test's, not the user's."""
    folder = tmp_path / "config"
    monkeypatch.setenv("NAPARI_USEMA_CONFIG", str(folder))
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it are skipped, with the reason, where it is missing."""
    if not (SHARED_DATA / "microscopy" / "images").is_dir():
        pytest.skip(f"the real data folder {SHARED_DATA} is not present (it sits beside the repository in development and CI)")
    return SHARED_DATA


def make_checkpoint(path: Path, *, task: str = "instance", in_channels: int = 1, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    out = 3 if task == "instance" else 2
    config = preset("tiny", in_channels=in_channels, out_channels=out)
    names = ("background", "interior", "boundary") if task == "instance" else ("background", "polyp")
    return save_checkpoint(path, build_model(config), CheckpointMetadata(config, task, names))


@pytest.fixture(scope="session")
def tiny_instance_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_instance.safetensors")


@pytest.fixture(scope="session")
def tiny_semantic_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_semantic.safetensors", task="semantic", in_channels=3)


class IntensityNet(torch.nn.Module):
    """A stand-in 'network' with a known answer: bright pixels are interior, dark ones background.

    Used where a test needs real objects out of the pipeline, which an untrained USEMA does not give.
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor, deep_supervision: bool = False) -> torch.Tensor:
        g = x[:, :1]
        return torch.cat([-8 * (g - 0.5), 8 * (g - 0.5), torch.full_like(g, -4.0)], dim=1)


@pytest.fixture
def intensity_model():
    """A LoadedModel around IntensityNet, with an instance task and percentile normalisation."""
    from napari_usema.io.checkpoint import LoadedModel
    from napari_usema.io.metadata import NormalizationRecipe

    config = preset("tiny")
    meta = CheckpointMetadata(config, "instance", normalization=NormalizationRecipe("percentile", 1, 99.8))
    return LoadedModel(IntensityNet(config), meta)


def disk_image(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    """float32 image, 1 inside the disks and 0 outside; touching disks stay apart by one dark row."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape, np.float32)
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 1
    return image


@pytest.fixture
def dock(make_napari_viewer, tmp_path: Path):
    """A shown napari viewer with the nuclei sample and the USEMA dock widget: ``(viewer, widget)``."""
    from napari_usema._sample_data import load_nuclei
    from napari_usema._widgets.main import UsemaWidget

    viewer = make_napari_viewer(show=True)
    viewer.add_image(load_nuclei(), name="nuclei")
    widget = UsemaWidget(viewer, output_folder=tmp_path / "models")
    viewer.window.add_dock_widget(widget, name="USEMA")
    widget.reset_choices()
    return viewer, widget
