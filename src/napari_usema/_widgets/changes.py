"""After a re-run (Re-segment with a fine-tuned model, or new settings): what changed, in words and,
if asked for, as a layer that marks the added objects green and the removed ones magenta."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap

from napari_usema.postprocess.compare import ADDED, REMOVED, change_mask, compare_labels

CHANGE_COLOURS = {None: "transparent", 0: "transparent", ADDED: "#00e05a", REMOVED: "#ff2bd6"}


def previous_labels(viewer: Any, state: Any, image: Any) -> np.ndarray | None:
    """A copy of the labels of the last instance run on ``image`` (as they are now, with the user's
    edits), if its layer is still there: the baseline a new run is compared with."""
    if state is None or state.image is not image or state.labels is None or state.labels not in viewer.layers:
        return None
    if state.loaded.metadata.task != "instance":
        return None
    return np.array(state.labels.data, copy=True)


def report_changes(viewer: Any, before: np.ndarray | None, labels: Labels, *, mark: bool, transform: dict[str, Any]) -> str:
    """``" (since the last run: 5 added, 3 removed, 140 kept)"`` for the status line, and with ``mark`` the
    layer ``"<labels> changes"`` (made, or updated in place). Empty when there is nothing to compare."""
    after = np.asarray(labels.data)
    if before is None or before.shape != after.shape:
        return ""
    changes = compare_labels(before, after)
    if mark:
        name = f"{labels.name} changes"
        mask = change_mask(before, after, changes)
        if name in viewer.layers and isinstance(viewer.layers[name], Labels):
            viewer.layers[name].data = mask
        else:
            viewer.add_labels(mask, name=name, colormap=DirectLabelColormap(color_dict=CHANGE_COLOURS), opacity=0.8, **transform)
    return f" (since the last run: {changes.summary()})"
