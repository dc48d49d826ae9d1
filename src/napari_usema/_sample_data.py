"""npe2 sample data: a nuclei image and a colonoscopy frame shipped in the package (see samples/ATTRIBUTION.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np


def sample_path(name: str) -> Path:
    """Path of a shipped sample file (``nuclei.tif`` or ``colonoscopy.png``)."""
    return Path(str(resources.files("napari_usema") / "samples" / name))


def load_nuclei() -> np.ndarray:
    import tifffile

    return tifffile.imread(sample_path("nuclei.tif"))


def load_colonoscopy() -> np.ndarray:
    import imageio.v3 as iio

    return np.asarray(iio.imread(sample_path("colonoscopy.png")))


def nuclei_sample() -> list[tuple[Any, dict, str]]:
    """Fluorescence nuclei (BBBC038 / DSB 2018, CC0)."""
    source = {"source": "BBBC038 / 2018 Data Science Bowl (Caicedo et al., Nature Methods 2019)", "licence": "CC0 1.0"}
    metadata = {**source, "usema_suggested_model": "nuclei"}  # docked on it, the widget picks its model
    return [(load_nuclei(), {"name": "nuclei", "colormap": "gray", "metadata": metadata}, "image")]


def colonoscopy_sample() -> list[tuple[Any, dict, str]]:
    """A colonoscopy frame with a polyp (Kvasir-SEG / HyperKvasir, CC BY 4.0)."""
    source = {"source": "Kvasir-SEG / HyperKvasir (Jha et al. 2020; Borgli et al. 2020)", "licence": "CC BY 4.0"}
    metadata = {**source, "usema_suggested_model": "polyps"}
    return [(load_colonoscopy(), {"name": "colonoscopy", "rgb": True, "metadata": metadata}, "image")]
