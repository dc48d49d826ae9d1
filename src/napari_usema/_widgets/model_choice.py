"""Which model an image gets by default, what a model is in plain words, and whether it suits the image.

- A layer may name its model: the bundled samples do (``usema_suggested_model`` in their metadata).
- Otherwise the last model the user ran on that kind of image (grey or colour) is picked again; the
  choice is kept in a small JSON file in the user's config folder (``NAPARI_USEMA_CONFIG`` overrides it).
- When no training image of the model was of the image's kind (``inference.image_kind``), the Segment
  tab says so before anything runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_usema.inference.image_kind import fit_warning, image_kind, trained_kinds
from napari_usema.io.checkpoint import LoadedModel
from napari_usema.io.outputs import atomic_write

SUGGESTED = "usema_suggested_model"  # a layer's metadata key naming the model made for it


def config_folder() -> Path:
    """``$NAPARI_USEMA_CONFIG``, else the platform's user config folder for napari-usema."""
    if os.environ.get("NAPARI_USEMA_CONFIG"):
        return Path(os.environ["NAPARI_USEMA_CONFIG"])
    import platformdirs

    return Path(platformdirs.user_config_dir("napari-usema"))


def kind_key(layer: Any) -> str:
    """``"colour"`` for an RGB layer, else ``"grey"``: the kinds a model is remembered for."""
    return "colour" if getattr(layer, "rgb", False) else "grey"


class ModelMemory:
    """The last model choice used on each kind of image, kept across sessions in ``models.json``."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder or config_folder()) / "models.json"

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):  # none yet, or unreadable: start afresh rather than fail the widget
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def recall(self, kind: str) -> str | None:
        return self._read().get(kind)

    def remember(self, kind: str, choice: str) -> None:
        data = self._read()
        if data.get(kind) == choice:
            return
        data[kind] = choice
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.path, overwrite=True) as tmp:
                tmp.write_text(json.dumps(data, indent=1))
        except OSError:  # a read-only home: the choice is simply not remembered
            pass


def suggested_model(layer: Any, choices: list[str], memory: ModelMemory, seen: set[int], *, busy: bool) -> str | None:
    """The model choice for ``layer``: the one its metadata names, else the last used on its kind.

    Once per layer (``seen`` holds the ids of those already given theirs) and never while a job runs:
    after that the model is the user's choice, and a fine-tuned one stays when they switch back.
    """
    if layer is None or id(layer) in seen or busy:
        return None
    seen.add(id(layer))
    for candidate in (layer.metadata.get(SUGGESTED), memory.recall(kind_key(layer))):
        if candidate in choices:
            return candidate
    return None


def describe_model(loaded: LoadedModel) -> tuple[str, str]:
    """What the model does, for people (``"Finds each object as its own region (an id per object), to
    count and measure · grey or colour images · objects ~18 px across"``), and the exact facts for a
    tooltip."""
    from napari_usema.model import count_parameters

    meta = loaded.metadata
    things = ", ".join(meta.class_names[1:]) or "objects"
    if meta.task == "instance":
        what = "Finds each object as its own region (an id per object), to count and measure"
    else:
        what = f"Marks the {things} area of the image (one class map, no separate objects)"
    takes = "grey or colour images" if meta.input_channels == 3 else f"{meta.input_channels}-channel images"
    parts = [what, takes]
    if meta.object_diameter:
        parts.append(f"objects ~{meta.object_diameter:.0f} px across")
    exact = (
        f"task {meta.task}; outputs {', '.join(meta.class_names)}; {meta.input_channels} input channel(s); "
        f"{count_parameters(loaded.model) / 1e6:.1f}M parameters"
        + (f"; runs at {meta.input_scale:g}x resolution" if meta.input_scale != 1 else "")
    )
    return " · ".join(parts), exact


def fit_text(loaded: LoadedModel | None, layer: Any, plane_of: Callable[[Any], Any]) -> str:
    """A warning when ``loaded`` never saw an image like ``layer``'s plane (``plane_of(layer)``, one 2-D
    plane as Segment reads it); empty when it did, when that is unknown, or when the plane is neither
    grey nor the layer's RGB (fluorescence channels are not colour, whatever their number)."""
    if loaded is None or layer is None:
        return ""
    try:
        plane = plane_of(layer)
    except ValueError:  # a shape that reads no way: Segment explains it
        return ""
    rgb = bool(getattr(layer, "rgb", False))
    if np.ndim(plane) != (3 if rgb else 2):
        return ""
    try:
        kind = image_kind(plane, rgb=rgb)  # reads a subsampled grid only: lazy slides stay lazy
    except ValueError:  # non-finite values: Segment refuses them with its own message
        return ""
    name = Path(str(loaded.path)).stem if loaded.path else "this model"
    return fit_warning(kind, trained_kinds(loaded), f"the {name} model") or ""
