"""What kind of image this is, and whether a model was trained on its kind.

A model learns the look of its training images. Two coarse traits separate the looks that matter here
and can be read from any image without knowing its modality:

- *colour*: RGB whose channels differ (stained tissue, endoscopy), or one grey channel (fluorescence,
  phase contrast, bright field in grey). RGB with equal channels counts as grey.
- *background*: bright or dark, from the median of the image scaled between its 1st and 99.8th
  percentiles (the models' own normalisation). Fluorescence nuclei sit on a dark background (median
  0.00-0.32 over the 43 fluorescence images of ``../shared/data/microscopy``); bright-field tissue on a
  bright one (0.57-0.89 over its 9). :data:`BRIGHT` lies between.

Checkpoints trained by ``usema train`` (and fine-tuned ones) record the kinds of their training images in
their provenance (``image_kinds``); for the bundled models :data:`BUNDLED_KINDS` holds them, counted on
their training splits (``tests/test_image_kind.py`` counts again).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BRIGHT = 0.45  # median of the normalised image above which the background is bright
GREY_TOLERANCE = 0.02  # channels that differ by less than this (of the range) on average are one grey
_SAMPLE = 512  # images are read on a grid of at most this many pixels a side: a slide costs a crop

BUNDLED_KINDS: dict[str, dict[str, int]] = {
    # weights/splits/nuclei_train.txt: 34 fluorescence, 7 H&E / haematoxylin tissue images.
    "nuclei": {"grey, dark background": 34, "colour, bright background": 7},
    # weights/splits/polyps_train.txt: 500 colonoscopy frames, most dark around the lit mucosa.
    "polyps": {"colour, dark background": 354, "colour, bright background": 146},
}


@dataclass(frozen=True)
class ImageKind:
    colour: bool
    bright_background: bool
    background: float  # the median of the normalised image, 0..1

    def __str__(self) -> str:
        return f"{'colour' if self.colour else 'grey'}, {'bright' if self.bright_background else 'dark'} background"


def image_kind(image: Any, *, rgb: bool) -> ImageKind:
    """The kind of one 2-D image ``(H, W)``, or ``(H, W, C)`` with ``rgb`` (C = 3 or 4, alpha ignored)."""
    shape = tuple(np.shape(image))
    if len(shape) != (3 if rgb else 2):
        raise ValueError(f"expected one {'(H, W, 3)' if rgb else '(H, W)'} image, got shape {shape}")
    step = max(1, max(shape[:2]) // _SAMPLE)
    array = np.asarray(image[::step, ::step], np.float32)  # the grid only: a lazy slide is not read whole
    if not np.isfinite(array).all():
        raise ValueError("the image holds NaN or infinite values")
    colour = False
    if rgb:
        array = array[..., :3]
        low, high = np.percentile(array, [1, 99.8])
        spread = np.abs(array - array.mean(axis=-1, keepdims=True)).mean() / max(high - low, 1e-6)
        colour = bool(spread > GREY_TOLERANCE)
        array = array.mean(axis=-1)
    low, high = np.percentile(array, [1, 99.8])
    background = float(np.clip(np.median((array - low) / max(high - low, 1e-6)), 0, 1))
    return ImageKind(colour, background > BRIGHT, background)


def count_kinds(kinds: Iterable[ImageKind]) -> dict[str, int]:
    """``{"grey, dark background": 34, ...}``: what a checkpoint records of its training images."""
    return dict(Counter(str(k) for k in kinds))


def training_image_kinds(data_dir: str | Path, names: Iterable[str] | None) -> dict[str, int]:
    """:func:`count_kinds` of the images of a ``DIR/images`` + ``DIR/masks`` training folder (``names``
    of them, or all); images that are neither grey nor RGB (multichannel fluorescence) are not counted."""
    from ..io.images import find_pairs, read_image

    pairs = find_pairs(data_dir)
    kinds = (kind_of_array(read_image(pairs[name][0])) for name in (names if names is not None else sorted(pairs)))
    return count_kinds(kind for kind in kinds if kind is not None)


def kind_of_array(image: Any) -> ImageKind | None:
    """The kind of a grey ``(H, W)`` or RGB ``(H, W, 3|4)`` image; None for anything else (multichannel
    fluorescence has no colour to speak of)."""
    shape = np.shape(image)
    rgb = len(shape) == 3 and shape[-1] in (3, 4)
    return image_kind(image, rgb=rgb) if len(shape) == 2 or rgb else None


def trained_kinds(loaded: Any) -> dict[str, int] | None:
    """The kinds of a model's training images: its provenance's, else a bundled model's (by file), else
    None (unknown: no warning is possible)."""
    recorded = loaded.metadata.provenance.get("image_kinds")
    if isinstance(recorded, dict) and recorded:
        return {str(k): int(v) for k, v in recorded.items()}
    from ..io.bundled import BUNDLED, weights_dir

    path = getattr(loaded, "path", None)
    if path is None:
        return None
    for model, file in BUNDLED.items():
        bundled = weights_dir() / file
        if bundled.is_file() and Path(path).resolve() == bundled.resolve():  # the file itself, not a namesake
            return BUNDLED_KINDS.get(model)
    return None


def fit_warning(kind: ImageKind, trained: dict[str, int] | None, model_name: str = "the model") -> str | None:
    """A sentence for the user when no training image was of ``kind``; None when some were, or unknown."""
    if not trained or trained.get(str(kind)):
        return None
    seen = ", ".join(f"{kind_} ({count})" for kind_, count in sorted(trained.items(), key=lambda item: -item[1]))
    return (
        f"This image looks {kind} (median {kind.background:.2f} of its range); {model_name} was trained on "
        f"{seen} images only. Expect poorer results: check them, or fine-tune on a few corrected images."
    )
