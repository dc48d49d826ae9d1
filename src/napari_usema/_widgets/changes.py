"""After a re-run (Re-segment with a fine-tuned model, or new settings): what changed, in words and,
if asked for, as a layer that marks the added objects green and the removed ones magenta."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap

from napari_usema._widgets.layers import standard_labels
from napari_usema._widgets.state import SegmentationState
from napari_usema.inference.pipeline import SegmentationResult
from napari_usema.postprocess.compare import ADDED, REMOVED, compare_labels

CHANGE_COLOURS = {None: "transparent", 0: "transparent", ADDED: "#00e05a", REMOVED: "#ff2bd6"}


def previous_labels(viewer: Any, state: Any, image: Any) -> tuple[np.ndarray, str] | None:
    """The labels of the last instance run on ``image`` as they are now (with the user's edits), in the
    engine's axes, and those axes; None if there is no such run or its layer is gone or reshaped. The
    baseline a new run is compared with."""
    if state is None or state.image is not image or state.labels is None or state.labels not in viewer.layers:
        return None
    if state.loaded.metadata.task != "instance":
        return None
    try:
        return standard_labels(state.labels.data, state.labels.metadata.get("axes"), state.axes).copy(), state.axes
    except ValueError:  # the user reshaped the layer: nothing to compare with
        return None


def report_changes(
    viewer: Any,
    before: tuple[np.ndarray, str] | None,
    result: SegmentationResult,
    state: SegmentationState,
    labels: Labels,
    *,
    mark: bool,
) -> str:
    """``" (since the last run: 5 added, 3 removed, 140 kept)"`` for the status line, and with ``mark`` the
    layer ``"<labels> changes"`` (made, or updated in place, laid out as ``labels``). Empty when there is
    nothing to compare (no earlier run, or one of other axes or shape)."""
    after = np.asarray(result.labels)
    if before is None or before[1] != result.axes or before[0].shape != after.shape:
        return ""
    # The trailing axes that share one set of ids: a tracked stack throughout, a stitched one per time
    # point, otherwise each plane (where an id means another object in every plane).
    frame = None if result.links.track is not None else 3 if result.links.stitch is not None else 2
    changes, mask = compare_labels(before[0], after, frame_ndim=frame)
    if mark:
        name = f"{labels.name} changes"
        mask, _ = state.layer_labels(mask)
        transform = state.transform or {}
        if name in viewer.layers and isinstance(viewer.layers[name], Labels):
            viewer.layers[name].data = mask
        else:
            viewer.add_labels(mask, name=name, colormap=DirectLabelColormap(color_dict=CHANGE_COLOURS), opacity=0.8, **transform)
    return f" (since the last run: {changes.summary()})"
