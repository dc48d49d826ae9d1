"""What an image file says about itself: its axes, its channels' names and its pixel size.

Read from OME-TIFF (the OME-XML), ImageJ TIFF (hyperstack axes, ``Labels``, ``unit``, ``spacing``),
any TIFF (tifffile's series axes, photometric RGB as colour samples, the resolution tags) and OME-Zarr
(NGFF 0.4 and 0.5: ``multiscales`` axes and scale, ``omero`` channel labels), which opens lazily at
the level the user chooses. Axes letters are T, Z, C, Y, X (a TIFF's samples, S, become C); an axis
that the file does not name (tifffile's Q or I) leaves the axes unknown (None), for the caller to read
from the shape and announce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tifffile

from .images import ImageReadError, is_zarr, read_image

KNOWN = set("TZCYXS")
# Micrometres per unit, for the units OME, ImageJ and NGFF write.
MICROMETRES = {
    "nm": 1e-3, "nanometer": 1e-3, "µm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0, "\\u00B5m": 1.0,
    "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6,
}  # fmt: skip


@dataclass(frozen=True)
class ImageInfo:
    """The metadata of an image file that changes how it is segmented and written back.

    Attributes:
        axes: One letter (T, Z, C, Y, X) per dimension of the array as read; None where the file does
            not say.
        colour: Whether the C axis holds colour samples (photometric RGB), not separate channels.
        channel_names: The channels' names, in order, where the file names them.
        pixel_size: ``(y, x)`` in micrometres, where the file records it.
        z_spacing: The distance between planes in micrometres, where recorded.
        format: What the file is, for messages (``OME-TIFF``, ``ImageJ TIFF``, ``TIFF``, ``OME-Zarr 0.4``).
        notes: Warnings for the user, e.g. metadata that could not be read (the pixels could).
    """

    axes: str | None = None
    colour: bool = False
    channel_names: tuple[str, ...] = ()
    pixel_size: tuple[float, float] | None = None
    z_spacing: float | None = None
    format: str = "image"
    notes: tuple[str, ...] = field(default=(), compare=False)


def open_image(path: str | Path, *, lazy: bool = True, level: int = 0) -> tuple[Any, ImageInfo]:
    """The image of ``path`` and what its metadata says; TIFFs and OME-Zarr are read lazily.

    Args:
        level: For OME-Zarr, the resolution level (0: full resolution).

    Raises:
        ImageReadError: a missing or unreadable file, an OME-Zarr without multiscale metadata, or a
            level it does not have.
    """
    path = Path(path)
    if is_zarr(path):
        return _open_ome_zarr(path, level)
    image = read_image(path, lazy=lazy, level=level)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return image, ImageInfo(format=path.suffix.lstrip(".").upper())
    try:
        info = tiff_info(path)
    except Exception as err:  # the pixels were readable; metadata that is not is worth a warning, not an error
        return image, ImageInfo(format="TIFF", notes=(f"{path.name}: its metadata could not be read ({err})",))
    if info.axes is not None and len(info.axes) != image.ndim:  # tifffile squeezed differently: do not trust it
        info = ImageInfo(None, False, (), info.pixel_size, info.z_spacing, info.format)
    return image, info


def tiff_info(path: str | Path) -> ImageInfo:
    """Axes, channel names and pixel size of a TIFF's first series."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = series.pages[0] if series.pages else tif.pages[0]
        axes = series.axes.upper()
        known = set(axes) <= KNOWN and not ("S" in axes and "C" in axes)
        colour = "S" in axes and page.photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)
        letters = axes.replace("S", "C") if known else None
        if tif.is_ome:
            names, pixel, z = _ome_tiff(tif.ome_metadata)
            channels = series.shape[letters.index("C")] if letters and "C" in letters else 1
            names = names if len(names) == channels > 1 else ()
            fmt = "OME-TIFF"
        elif tif.is_imagej:
            names, pixel, z = _imagej(tif.imagej_metadata or {}, page, letters, series.shape)
            fmt = "ImageJ TIFF"
        else:
            shaped = (tif.shaped_metadata or ({},))[0] if tif.is_shaped else {}
            names, pixel, z = (), _resolution(page, None), shaped.get("z_spacing_um")  # as tiff_options writes it
            fmt = "TIFF"
        return ImageInfo(letters, colour, names, pixel, z, fmt)


def _ome_tiff(xml: str | None) -> tuple[tuple[str, ...], tuple[float, float] | None, float | None]:
    pixels = tifffile.xml2dict(xml or "<OME/>").get("OME", {}).get("Image", {})
    pixels = (pixels[0] if isinstance(pixels, list) else pixels).get("Pixels", {})
    channels = pixels.get("Channel", [])
    channels = channels if isinstance(channels, list) else [channels]
    names = tuple(str(c.get("Name", "")) for c in channels)
    names = names if all(names) else ()

    def size(axis: str) -> float | None:
        value = pixels.get(f"PhysicalSize{axis}")
        factor = MICROMETRES.get(str(pixels.get(f"PhysicalSize{axis}Unit", "µm")))
        return float(value) * factor if value is not None and factor is not None else None

    y, x = size("Y"), size("X")
    return names, (y, x) if y and x else None, size("Z")


def _imagej(meta: dict, page: Any, axes: str | None, shape: tuple[int, ...]) -> tuple[tuple[str, ...], Any, Any]:
    labels = tuple(str(name) for name in meta.get("Labels", ()) or ())
    channels = shape[axes.index("C")] if axes and "C" in axes else 1
    # ImageJ writes one label per plane, channels varying fastest: the first C name the channels.
    names = labels[:channels] if channels > 1 and len(labels) >= channels and len(labels) % channels == 0 else ()
    names = names if all(names) else ()
    unit = str(meta.get("unit", "")).replace("\\u00B5", "µ")
    spacing = meta.get("spacing")
    factor = MICROMETRES.get(unit)
    z = float(spacing) * factor if spacing and factor else None
    return names, _resolution(page, factor), z


def _resolution(page: Any, unit_micrometres: float | None) -> tuple[float, float] | None:
    """``(y, x)`` pixel size in micrometres from the resolution tags (pixels per unit)."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    # Centimetres, as microscopy software writes them; ImageJ writes its own unit. Inches are an image
    # editor's dots per inch (72, 96, 300), not a pixel size worth carrying.
    per_unit = {3: 10_000.0}.get(unit) if unit_micrometres is None else unit_micrometres
    if per_unit is None:
        return None

    def size(tag: str) -> float | None:
        numerator, denominator = tags[tag].value
        return per_unit * denominator / numerator if numerator > 0 else None

    y, x = size("YResolution"), size("XResolution")
    if not y or not x or (unit_micrometres is not None and x == y == unit_micrometres):
        return None  # 1 pixel per unit: no resolution recorded
    return y, x


def _open_ome_zarr(path: Path, level: int) -> tuple[Any, ImageInfo]:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as err:
        raise ImageReadError(f"{path} could not be opened as a zarr group ({type(err).__name__}: {err})") from None
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests its metadata under "ome"
    multiscales = ome.get("multiscales")
    if not multiscales:
        raise ImageReadError(
            f"{path} is a zarr store without OME-Zarr multiscales metadata; napari-usema reads OME-Zarr images "
            "(NGFF 0.4 or 0.5). Save it with ome-zarr, or as a TIFF"
        )
    image = multiscales[0]
    datasets = image.get("datasets", [])
    if not 0 <= level < len(datasets):
        raise ImageReadError(f"{path} has {len(datasets)} resolution levels (0..{len(datasets) - 1}); no level {level}")
    axes_meta = image.get("axes") or [{"name": a} for a in "tczyx"]  # NGFF 0.3 and older: always 5-D
    names = [str(a["name"] if isinstance(a, dict) else a).upper() for a in axes_meta]
    axes = "".join(names) if set(names) <= KNOWN and len(set(names)) == len(names) else None
    try:
        array = group[datasets[level]["path"]]
    except Exception as err:
        raise ImageReadError(f"{path}: level {level} ({datasets[level].get('path')!r}) could not be opened ({err})") from None
    scale = _ngff_scale(image, datasets[level])
    pixel = z = None
    if axes and scale and len(scale) == len(axes):
        units = [MICROMETRES.get(str(a.get("unit", "micrometer"))) if isinstance(a, dict) else 1.0 for a in axes_meta]
        size = {a: s * u for a, s, u in zip(axes, scale, units, strict=True) if u is not None}
        pixel = (size["Y"], size["X"]) if "Y" in size and "X" in size else None
        z = size.get("Z")
    labels = tuple(str(c.get("label", "")) for c in ome.get("omero", {}).get("channels", []))
    channels = array.shape[axes.index("C")] if axes and "C" in axes else 0
    names = labels if len(labels) == channels and all(labels) else ()
    version = ome.get("version") or image.get("version") or "?"
    return array, ImageInfo(axes, False, names, pixel, z, f"OME-Zarr {version}")


def _ngff_scale(image: dict, dataset: dict) -> list[float] | None:
    """The scale of a dataset, times the multiscale's own scale where there is one."""

    def scale_of(transforms: Any) -> list[float] | None:
        for t in transforms or []:
            if t.get("type") == "scale":
                return [float(v) for v in t.get("scale", [])]
        return None

    own, outer = scale_of(dataset.get("coordinateTransformations")), scale_of(image.get("coordinateTransformations"))
    if own and outer and len(own) == len(outer):
        return [a * b for a, b in zip(own, outer, strict=True)]
    return own


def describe(info: ImageInfo) -> str:
    """One line for the user: ``OME-TIFF, axes CYX, channels DAPI, marker, 0.325 µm pixels``."""
    parts = [info.format, f"axes {info.axes}" if info.axes else "axes not recorded"]
    if info.channel_names:
        parts.append("channels " + ", ".join(info.channel_names))
    if info.pixel_size:
        parts.append(f"{info.pixel_size[1]:.4g} µm pixels")
    return ", ".join(parts)


def tiff_options(info: ImageInfo | None, axes: str) -> dict[str, Any]:
    """``tifffile.imwrite`` options that keep the input's pixel size in labels of ``axes`` (``"ZYX"``...),
    and the axes themselves, so the file reads back as it was written."""
    options: dict[str, Any] = {"metadata": {"axes": axes}}
    if info is not None and info.pixel_size:
        y, x = info.pixel_size
        options.update(resolution=(1e4 / x, 1e4 / y), resolutionunit="CENTIMETER")
        if info.z_spacing and "Z" in axes:
            options["metadata"]["z_spacing_um"] = info.z_spacing
    return options
