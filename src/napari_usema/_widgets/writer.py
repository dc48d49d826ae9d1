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
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from napari_usema._widgets.layers import checksum
from napari_usema.io.images import write_tiff
from napari_usema.io.outputs import atomic_write
from napari_usema.io.provenance import add_hashes, jsonable, predict_command, result_record, write_record

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
    """The provenance of one Segment run on the ``image`` layer. Files are hashed when the record is
    saved, not here (this runs on napari's drawing thread). The ``usema predict`` line is given only
    where it would segment what Segment did: a model file, and a layer that is its file as napari read
    it whole (not one channel of it as this plugin's reader splits them, nor a layer made in napari)."""
    from napari_usema.inference.devices import precision_used, select_device

    meta = loaded.metadata
    source = getattr(getattr(image, "source", None), "path", None)
    reader = getattr(getattr(image, "source", None), "reader_plugin", None)
    shape = tuple(np.shape(image.data[0] if image.multiscale else image.data))
    diameter = meta.object_diameter / result.size if meta.object_diameter and result.size != 1 else None
    scales = meta.test_scales if tiling.scales is None else tiling.scales
    used = dataclasses.replace(tiling, scales=scales, device=str(select_device(tiling.device)))  # the device that ran
    options = {
        "task": meta.task,
        "tiling": jsonable(used),
        "tile_given": tiling.tile != type(tiling)().tile,  # a default tile is clamped to small images, as the CLI does
        "precision_used": precision_used(used.device, tiling.precision),  # what auto chose on this machine
        "watershed": jsonable(watershed),
        "diameter": diameter,
        "channel": channel,
        "axes": axes,
        "level": 0,
        "links": {"stitch": result.links.stitch, "track": result.links.track},
    }
    whole_file = source is not None and reader != "napari-usema" and not image.multiscale
    command = (
        predict_command(Path(source).resolve(), Path(loaded.path).resolve(), "OUT", options)
        if whole_file and loaded.path
        else None
    )
    record = result_record(
        model_name=Path(str(loaded.path or "in-memory model")).stem, model_path=loaded.path, task=meta.task,
        options=options, input_path=source, input_shape=shape, seconds=seconds, command=command, hash_files=False,
    )  # fmt: skip
    record["input"]["layer"] = {"name": image.name, "shape": list(shape), "whole_file": whole_file}
    pixel_size = image.metadata.get("pixel_size_um")  # as this plugin's reader found it in the file
    record["input"]["pixel_size_um"] = list(pixel_size) if pixel_size else _pixel_size_from_units(image)
    return record


def _pixel_size_from_units(layer: Any) -> list[float] | None:
    """``[y, x]`` micrometres a pixel, where the layer's last two axes carry length units; else None
    (napari's default unit is the pixel, which says nothing of the microscope)."""
    try:
        units = layer.units[-2:]
        return [float((scale * unit).to("micrometer").magnitude) for scale, unit in zip(layer.scale[-2:], units, strict=True)]
    except Exception:  # pixels, or a napari without units: no length to convert
        return None


def retuned(layer: Any, watershed: Any) -> None:
    """After the Post-process tab re-made ``layer``'s labels: its record names the new watershed."""
    record = layer.metadata.get(RECORD)
    if record is None:
        return
    record["options"]["watershed"] = jsonable(watershed)
    if record.get("command"):
        source = record["input"]["file"]
        record["command"] = shlex.join(predict_command(source, record["model"]["file"], "OUT", record["options"]))


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer: ``path`` (``*.usema.tif``) and its ``.usema.json`` record, both replaced if there
    (napari's save dialog asks about the ``.tif`` before it gets here); a failure leaves neither."""
    target = Path(path)
    metadata = attributes.get("metadata", {})
    record = metadata.get(RECORD)
    if record is None:
        raise ValueError(f"{attributes.get('name', 'this layer')} was not made by USEMA's Segment: save it as plain .tif")
    record = dict(add_hashes(record), edited_after_run=metadata.get("usema_checksum") != checksum(data))
    stem = target.name[: -len(SUFFIX)] if target.name.endswith(SUFFIX) else target.stem
    sidecar = target.with_name(f"{stem}.usema.json")
    with atomic_write(sidecar, overwrite=True) as tmp_record:
        write_record(tmp_record, record, overwrite=True)
        labels = np.asarray(data)
        write_tiff(target, labels, overwrite=True, **_resolution(record, labels.ndim))  # the labels, then the record
    return [str(target), str(sidecar)]


def _resolution(record: dict[str, Any], ndim: int) -> dict[str, Any]:
    """The TIFF's pixel size, as ``usema predict`` writes it, where the image's was known."""
    from napari_usema.io.image_info import ImageInfo, tiff_options

    pixel_size = record["input"].get("pixel_size_um")
    if not pixel_size:
        return {}
    options = tiff_options(ImageInfo(pixel_size=tuple(pixel_size)), "YX")
    if ndim > 2:
        options.pop("metadata")  # the labels' other axes are napari's dims, not named here
    return options
