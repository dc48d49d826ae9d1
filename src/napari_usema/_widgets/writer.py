"""napari's *File › Save Selected Layers…* for a USEMA labels layer, as ``NAME.usema.tif``: the labels
as a TIFF, and beside them ``NAME.usema.json``, the provenance record ``usema predict`` writes (model,
every option, input, versions, time, and the equivalent ``usema predict`` line).

The record is made when the run ends (:func:`run_record`) and kept in the layer's metadata; a re-tune of
the watershed updates its options (:func:`retuned`). Labels edited since the run are saved as they are,
and the record says they were edited (``"edited_after_run": true``): its command then makes the labels
before the edits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from napari_usema._widgets.layers import checksum
from napari_usema.io.images import write_tiff
from napari_usema.io.outputs import atomic_write
from napari_usema.io.provenance import jsonable, predict_command, result_record, write_record

RECORD = "usema_provenance"  # the labels layer's metadata key
SUFFIX = ".usema.tif"


def run_record(
    loaded: Any,
    image: Any,
    tiling: Any,
    watershed: Any,
    result: Any,
    *,
    channel: int | None,
    axes: str,
    seconds: float,
) -> dict[str, Any]:
    """The provenance of one Segment run on the ``image`` layer (its file, when napari opened one)."""
    meta = loaded.metadata
    source = getattr(getattr(image, "source", None), "path", None)
    diameter = meta.object_diameter / result.size if meta.object_diameter and result.size != 1 else None
    used = dataclasses.replace(tiling, scales=meta.test_scales if tiling.scales is None else tiling.scales)
    options = {
        "task": meta.task,
        "tiling": jsonable(used),
        "tile_given": True,
        "watershed": jsonable(watershed),
        "diameter": diameter,
        "channel": channel,
        "axes": axes,
        "level": 0,
        "links": {"stitch": result.links.stitch, "track": result.links.track},
    }
    model = loaded.path or "in-memory model"
    return result_record(
        model_name=Path(str(model)).stem, model_path=loaded.path, task=meta.task, options=options,
        input_path=source, input_shape=tuple(np.shape(image.data[0] if image.multiscale else image.data)),
        seconds=seconds, command=predict_command(Path(source).resolve(), model, "OUT", options) if source else None,
    )  # fmt: skip


def retuned(layer: Any, watershed: Any) -> None:
    """After the Post-process tab re-made ``layer``'s labels: its record names the new watershed."""
    record = layer.metadata.get(RECORD)
    if record is None:
        return
    record["options"]["watershed"] = jsonable(watershed)
    if record.get("command"):
        source = record["input"]["file"]
        record["command"] = " ".join(predict_command(source, record["model"]["file"], "OUT", record["options"]))


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer: ``path`` (``*.usema.tif``) and its ``.json`` record; neither is written over an
    existing file (napari's dialog asks before it gets here), and a failure leaves neither."""
    target = Path(path)
    metadata = attributes.get("metadata", {})
    record = metadata.get(RECORD)
    if record is None:
        raise ValueError(f"{attributes.get('name', 'this layer')} was not made by USEMA's Segment: save it as plain .tif")
    record = dict(record, edited_after_run=metadata.get("usema_checksum") != checksum(data))
    stem = target.name[: -len(SUFFIX)] if target.name.endswith(SUFFIX) else target.stem
    sidecar = target.with_name(f"{stem}.usema.json")
    with atomic_write(sidecar, overwrite=True) as tmp_record:
        write_record(tmp_record, record, overwrite=True)
        write_tiff(target, np.asarray(data), overwrite=True)  # the labels first, then the record beside them
    return [str(target), str(sidecar)]
