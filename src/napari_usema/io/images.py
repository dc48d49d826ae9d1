"""Reading and writing image files, and finding image/mask pairs in data folders.

TIFFs are opened lazily (memory-mapped when possible, else through zarr) so large slides are read
tile by tile; a small compressed TIFF is decoded whole when first read (:class:`DecodedOnRead`), and
other formats (PNG, JPEG, ...) are read whole.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .outputs import atomic_write

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
# Compressed single-level TIFFs up to this many decoded bytes are decoded whole when first read rather than
# through zarr, whose import alone (0.15 s) is a twentieth of `usema predict` on the bundled sample.
DECODE_WHOLE_BYTES = 64 << 20


class ImageReadError(ValueError):
    """A file could not be read as an image."""


def read_image(path: str | Path, *, lazy: bool = False, level: int = 0) -> Any:
    """Read an image as an array; with ``lazy`` a TIFF comes back memory-mapped, decoded at the first read
    (:class:`DecodedOnRead`: small compressed ones) or zarr-backed, and ``level`` picks a level of a
    pyramidal TIFF.

    Raises:
        ImageReadError: naming the file and the reason.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path} does not exist")
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_tiff(path, lazy, level)
        if level:
            raise ImageReadError(f"{path}: only pyramidal TIFF and OME-Zarr images have resolution levels (--level {level})")
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except ImageReadError:
        raise
    except Exception as err:  # each reader raises its own types for a corrupt file
        raise ImageReadError(f"{path} could not be read as an image ({type(err).__name__}: {str(err)[:200]})") from None


def _read_tiff(path: Path, lazy: bool, level: int = 0) -> Any:
    """The first series (of a pyramid, ``level``: 0 is full resolution)."""
    levels, nbytes = _tiff_levels(path)
    if not nbytes:
        raise ImageReadError(f"{path} could not be read as an image (a TIFF that holds no pixels)")
    if not 0 <= level < levels:
        raise ImageReadError(
            f"{path} has {levels} resolution level{'s' if levels > 1 else ''} (0..{levels - 1}); no level {level}"
        )
    if not lazy:
        return tifffile.imread(path, level=level)
    if levels == 1:
        try:
            return tifffile.memmap(path, mode="r")
        except ValueError:  # compressed or tiled: not memory-mappable
            pass
        if nbytes <= DECODE_WHOLE_BYTES:
            return DecodedOnRead(path, *_tiff_shape(path))
    import zarr

    store = tifffile.imread(path, aszarr=True, level=level)  # one level: an array, not a group
    return zarr.open(store, mode="r")


class DecodedOnRead:
    """A small compressed TIFF's first series as a lazy array: ``shape``, ``dtype`` and ``ndim`` come from
    the file's header, and the pixels are decoded whole at the first read. Only the two most recently read
    files stay decoded (an image and its mask read in turn do not decode again at every read), so a folder
    of inputs, opened together and checked before any work, holds at most two decoded images. Reads are
    read-only views: copy before changing one (``np.array``, or :meth:`read_copy`)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        stat = Path(path).stat()
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self._key = (str(self.path), stat.st_mtime_ns, stat.st_size, stat.st_ino)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._pixels()[key]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        pixels = self._pixels()
        if dtype is not None and np.dtype(dtype) != pixels.dtype:
            if copy is False:
                raise ValueError(f"a {pixels.dtype} image cannot be read as {np.dtype(dtype)} without a copy")
            return pixels.astype(dtype)  # a new array
        return pixels.copy() if copy else pixels  # NumPy asks for a copy (np.array) or allows a view (np.asarray)

    def read_copy(self) -> np.ndarray:
        """The pixels decoded into a new, writable array, without keeping them decoded here."""
        return self._checked(_decode(self.path))

    def _pixels(self) -> np.ndarray:
        with _DECODE_LOCK:  # two threads reading one file at first decode it once
            return self._checked(_decoded(*self._key))

    def _checked(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.shape != self.shape or pixels.dtype != self.dtype:
            raise ImageReadError(f"{self.path} changed while it was open: {pixels.shape} {pixels.dtype} pixels, "
                                 f"{self.shape} {self.dtype} when opened; open it again")  # fmt: skip
        return pixels


_DECODE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _decoded(path: str, mtime_ns: int, size: int, inode: int) -> np.ndarray:
    """The read-only pixels of ``path`` as it was when opened (its modification time, size and inode are
    the rest of the key: a changed file is decoded again)."""
    pixels = _decode(Path(path))
    pixels.setflags(write=False)
    return pixels


def _decode(path: Path) -> np.ndarray:
    try:
        return tifffile.imread(path)
    except Exception as err:  # a corrupt stream raises the codec's own error types (imagecodecs: RuntimeError)
        raise ImageReadError(f"{path} could not be decoded ({type(err).__name__}: {str(err)[:200]})") from None


def _tiff_shape(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    with tifffile.TiffFile(path) as tif:
        return tuple(int(n) for n in tif.series[0].shape), np.dtype(tif.series[0].dtype)


def _tiff_levels(path: Path) -> tuple[int, int]:
    """The first series' resolution levels, and its full-resolution size in bytes."""
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            return 1, 0
        return len(tif.series[0].levels), int(tif.series[0].nbytes)


def as_label_image(labels: Any, name: str) -> np.ndarray:
    """``labels`` as a 2-D integer array of ids (0: background), or a ``ValueError`` naming ``name``.

    A mask saved as RGB(A) with identical channels reads as one channel and a bool mask as 0/1; a colour
    image with different channels, another number of dimensions, float or negative values are refused.
    """
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] in (3, 4):
        if not (labels[..., :3] == labels[..., :1]).all():
            raise ValueError(f"{name}: the masks are a colour image with different channels; save one id per pixel")
        labels = labels[..., 0]
    if labels.ndim != 2:
        raise ValueError(f"{name}: labels of shape {labels.shape}; expected one 2-D label image")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: the labels are {labels.dtype}; masks hold integer ids (save them as uint8 or uint16)")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name}: the labels hold negative ids ({int(labels.min())}); ids are 0 (background) and up")
    return labels


def write_tiff(path: str | Path, array: np.ndarray, *, overwrite: bool = False, **options: Any) -> Path:
    """Write an array as a zlib-compressed TIFF of gray planes, whole or not at all (``atomic_write``),
    refusing to replace a file unless ``overwrite``; ``options`` go to ``tifffile.imwrite``."""
    # One gray page a plane: left to guess, tifffile stores a (3, H, W) stack as one planar RGB image.
    options.setdefault("photometric", "minisblack")
    with atomic_write(path, overwrite=overwrite) as temporary:
        tifffile.imwrite(temporary, array, compression="zlib", **options)
    return Path(path)


def write_labels_banded(
    path: str | Path, labels: Any, dtype: Any, *, overwrite: bool = False, tile: int = 512, **options: Any
) -> Path:
    """Write a large ``(H, W)`` label array (e.g. zarr on disk) to a tiled, compressed TIFF, reading
    one band of tile rows at a time; ``options`` go to ``tifffile.imwrite``."""
    h, w = labels.shape

    def tiles() -> Any:
        for y in range(0, h, tile):
            band = np.asarray(labels[y : y + tile]).astype(dtype)
            band = np.pad(band, ((0, tile - band.shape[0]), (0, (-w) % tile)))
            for x in range(0, band.shape[1], tile):
                yield band[:, x : x + tile]

    with atomic_write(path, overwrite=overwrite) as temporary:
        tifffile.imwrite(temporary, tiles(), shape=(h, w), dtype=dtype, tile=(tile, tile), compression="zlib", **options)
    return path


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a zarr store (a folder with zarr metadata), as OME-Zarr images are."""
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in ("zarr.json", ".zattrs", ".zgroup"))


def list_images(folder: str | Path, *, zarr: bool = False) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; with ``zarr``, zarr stores too."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES or (zarr and is_zarr(p)))


def find_pairs(data_dir: str | Path) -> dict[str, tuple[Path, Path]]:
    """Pair ``DIR/images/NAME.*`` with ``DIR/masks/NAME.*`` by file stem.

    Raises:
        ImageReadError: when a folder is missing or an image has no mask.
    """
    data_dir = Path(data_dir)
    images = {p.stem: p for p in list_images(data_dir / "images")}
    masks = {p.stem: p for p in list_images(data_dir / "masks")}
    missing = sorted(set(images) - set(masks))
    if missing:
        raise ImageReadError(f"{len(missing)} images in {data_dir / 'images'} have no mask, e.g. {missing[0]}")
    if not images:
        raise ImageReadError(f"no images found in {data_dir / 'images'}")
    return {stem: (images[stem], masks[stem]) for stem in sorted(images)}
