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
    return [(load_nuclei(), {"name": "nuclei (BBBC038, CC0)", "colormap": "gray"}, "image")]


def colonoscopy_sample() -> list[tuple[Any, dict, str]]:
    """A colonoscopy frame with a polyp (Kvasir-SEG / HyperKvasir, CC BY 4.0)."""
    return [(load_colonoscopy(), {"name": "colonoscopy (Kvasir-SEG, CC BY 4.0)", "rgb": True}, "image")]
