"""One text per setting, written once: the command line's ``--help`` and the napari widget's tooltips
both read them (``tests/test_help.py`` checks that each appears in both). Defaults are not written
here: each front end adds the default it shows."""

from __future__ import annotations

HELP = {
    # --- the model and the image ---------------------------------------------------------------
    "model": "the model: a bundled one (nuclei, polyps) or a checkpoint file (.safetensors) you trained or fine-tuned",
    "axes": "what each dimension of the image is, one letter each as stored (T time, Z depth, C channels, Y, X), e.g. "
    "CYX, ZYX or TZCYX; overrides what the file says (auto: the file's axes, else read from the shape and announced)",
    "channel": "for an image with more channels than the model takes: the one to segment, by index or by the name "
    "the file gives it (e.g. DAPI); fluorescence channels are never fed to a colour model as RGB",
    "device": "where the network runs: auto (a CUDA GPU, then Apple MPS, then the CPU), cpu, cuda or mps",
    # --- tiling and test-time augmentation --------------------------------------------------------
    "tile": "the image is cut into square tiles of this many pixels (the default is fitted to an image side shorter "
    "than it, or at most an eighth longer; a size you give is not): the bundled models learned on 256-pixel "
    "patches, and each tile is normalised on its own, so other sizes cost accuracy",
    "max_tile": "instead of --tile: the fewest tiles of at most this side, shrunk evenly to fit the image, so "
    "little is computed twice; faster, for models that do not mind the tile size (the bundled ones do)",
    "overlap": "how much neighbouring tiles overlap at least, as a fraction of the (largest) tile: seams disappear "
    "where tiles blend",
    "batch": "tiles run through the network at once: more is faster on a GPU, and needs more memory; 0: one on "
    "the CPU and MPS, as many as a CUDA GPU's free memory holds",
    "compile": "compile the network with torch.compile first: its first batches take a minute or more, so it pays "
    "only on long GPU runs (see benchmarks/gpu.sh)",
    "precision": "auto: bf16 where the device computes it natively (CUDA GPUs; CPUs with AVX512-BF16 or AMX, "
    "about 1.7x faster there, with the same validation accuracy); fp32: always full precision",
    "tta": "also run on mirrored copies and average (4x slower, slightly smoother results)",
    "scales": "multi-scale test-time augmentation: also run at these sizes around the model's own and average, so "
    "objects of unusual size are found more often (about 3x slower for 3 sizes)",
    "diameter": "the typical diameter of your objects in pixels: the image is resized so that they match the size "
    "the model learned (cellpose's diameter); unset or 0: they are already the model's size",
    # --- stacks ---------------------------------------------------------------------------------
    "stitch": "join the objects of neighbouring Z planes that overlap at least this much (intersection over union) "
    "into one 3-D object with one id",
    "track": "give each object one id over time: objects of consecutive time points that overlap are matched one to one",
    "link_iou": "objects of neighbouring planes or time points that overlap at least this much (intersection over "
    "union, 0-1) are one object",
    # --- outputs ----------------------------------------------------------------------------------
    "probabilities": "also keep the network's per-pixel probabilities (background, interior, boundary, or one per class)",
    # --- instance post-processing ---------------------------------------------------------------
    "mode": "how objects are cut apart: watershed splits touching nuclei at the boundaries the model sees; "
    "connected-components takes every blob of foreground as one object",
    "interior_threshold": "how sure the model must be that a pixel is inside an object for it to seed one: higher "
    "splits touching objects more, and may miss faint ones",
    "foreground_threshold": "how sure the model must be that a pixel belongs to any object: lower makes objects "
    "larger and finds fainter ones",
    "min_size": "seeds and objects smaller than this many pixels (at the model's object size) are dropped as noise",
    "fill_holes": "fill holes inside objects",
    # --- fine-tuning ----------------------------------------------------------------------------
    "steps": "training steps, one batch of image patches each: more learns more and takes longer",
    "lr": "how far each step moves the weights: too high forgets what the model knew, too low learns little",
}


def help_text(key: str, default: object = None) -> str:
    """``HELP[key]``, with ``" (default X)"`` when a default is given."""
    text = HELP[key]
    return text if default is None else f"{text} (default {default})"
