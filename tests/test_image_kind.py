"""The kind of an image (grey or colour, dark or bright background) and the warning for an unseen kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_usema._sample_data import load_colonoscopy, load_nuclei
from napari_usema.inference.image_kind import BUNDLED_KINDS, count_kinds, fit_warning, image_kind, trained_kinds
from napari_usema.io.bundled import resolve_model
from napari_usema.io.checkpoint import load_checkpoint
from napari_usema.io.images import find_pairs, read_image
from napari_usema.training.data import read_name_list

ROOT = Path(__file__).resolve().parents[1]


def test_the_samples_kinds_and_grey_rgb_counts_as_grey() -> None:
    nuclei, colonoscopy = load_nuclei(), load_colonoscopy()
    assert str(image_kind(nuclei, rgb=nuclei.ndim == 3)) == "grey, dark background"
    assert image_kind(colonoscopy, rgb=True).colour
    grey = np.repeat(np.asarray(nuclei if nuclei.ndim == 2 else nuclei[..., 0])[..., None], 3, axis=-1)
    assert not image_kind(grey, rgb=True).colour
    inverted = 255 - np.asarray(grey[..., 0])  # dark nuclei on a bright background: bright field in grey
    assert str(image_kind(inverted, rgb=False)) == "grey, bright background"


def test_bad_images_are_refused() -> None:
    with pytest.raises(ValueError, match=r"expected one \(H, W\) image, got shape \(2, 8, 8\)"):
        image_kind(np.zeros((2, 8, 8)), rgb=False)
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_kind(np.full((8, 8), np.nan), rgb=False)


def test_the_nuclei_model_warns_on_a_colonoscopy_frame_and_not_on_its_own_kind() -> None:
    nuclei, polyps = (load_checkpoint(resolve_model(name)) for name in ("nuclei", "polyps"))
    frame = image_kind(load_colonoscopy(), rgb=True)
    warning = fit_warning(frame, trained_kinds(nuclei), "the nuclei model")
    assert warning is not None and "colour, dark background" in warning and "grey, dark background (34)" in warning
    assert fit_warning(frame, trained_kinds(polyps), "the polyps model") is None
    sample = load_nuclei()
    assert fit_warning(image_kind(sample, rgb=sample.ndim == 3), trained_kinds(nuclei)) is None
    assert fit_warning(frame, None) is None  # a model that records nothing: no guess


@pytest.mark.parametrize(
    ("model", "folder", "split"), [("nuclei", "microscopy", "nuclei_train"), ("polyps", "endoscopy", "polyps_train")]
)
def test_the_bundled_kinds_are_those_of_the_training_splits(shared_data: Path, model: str, folder: str, split: str) -> None:
    pairs = find_pairs(shared_data / folder)
    kinds = []
    for name in read_name_list(ROOT / "weights" / "splits" / f"{split}.txt"):
        image = read_image(pairs[name][0])
        kinds.append(image_kind(image, rgb=image.ndim == 3))
    assert count_kinds(kinds) == BUNDLED_KINDS[model]
