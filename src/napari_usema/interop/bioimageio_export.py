"""A USEMA checkpoint as a BioImage.IO model package (model spec 0.5), which bioimageio.core, ilastik,
deepImageJ, QuPath and Fiji run.

The package holds:

- the weights as ``pytorch_state_dict`` (architecture :func:`napari_usema.interop.network.usema_network`
  with the checkpoint's config as keyword arguments) and, derived from them, an ``onnx`` graph
  (:mod:`.onnx_export`);
- the input ``raw`` ``(batch, channel, y, x)``: intensities as acquired, with the checkpoint's
  percentile normalisation written in the spec's vocabulary (``scale_range`` per channel over y and x);
  a grey image is given to a 3-channel model as three equal channels, as napari-usema does;
- the output ``logits`` ``(batch, class, y, x)``, the classes named; instance models' logits go through
  the seeded watershed in napari-usema (the spec has no such step; the documentation says so);
- a test input (a crop of the bundled sample) and its test output from napari-usema itself, a cover
  image, documentation made from the checkpoint's metadata, citations, licence and authors.

The spec's tools (``bioimageio.spec``, ``bioimageio.core``) come with the ``[bioimageio]`` extra.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import tempfile
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
import torch

from ..inference.normalization import measure
from ..io.checkpoint import LoadedModel
from ..io.outputs import atomic_write, check_output
from ..io.package import METADATA_FILE, WEIGHTS_FILE
from .onnx_export import export_onnx, size_step

SAMPLE_SIDE = 256  # the test input's least side (raised to a multiple of the model's size step)
EPS = 1e-6
CITATIONS = (
    (
        "USEMA: a Scalable Efficient Mamba Like Attention for medical image segmentation (this implementation: napari-usema).",
        None,
        "https://github.com/napari-usema/napari-usema",
    ),
    (
        "SEMA: a scalable and efficient Mamba like attention via token localization and averaging. ICML 2026.",
        None,
        "https://arxiv.org/abs/2506.08297",
    ),
)
DATA_CITATIONS = {
    "microscopy": (
        "Caicedo et al. Nucleus segmentation across imaging experiments: the 2018 Data Science Bowl. Nature Methods 16, "
        "1247 (2019).",
        "10.1038/s41592-019-0612-7",
    ),
    "endoscopy": ("Jha et al. Kvasir-SEG: a segmented polyp dataset. MMM 2020.", "10.1007/978-3-030-37734-2_37"),
}


def export_bioimageio(
    loaded: LoadedModel, out: str | Path, *, sample: np.ndarray, name: str, overwrite: bool = False, onnx: bool = True
) -> Path:
    """Write ``loaded`` as a BioImage.IO package (a ``.zip``) at ``out``, whole or not at all.

    Args:
        sample: A 2-D image ``(H, W)`` or ``(H, W, 3)`` of at least 256² pixels: its top-left 256² crop
            is the package's test input.
        name: The model's name in the package (e.g. ``"nuclei"``).
        onnx: Also derive ONNX weights (a minute or two on a CPU).

    Raises:
        ImportError: bioimageio.spec is not installed.
        ValueError: a sample too small or of the wrong shape, or a model the spec cannot describe.
    """
    try:
        from bioimageio.spec import save_bioimageio_package
    except ImportError:
        raise ImportError(
            'exporting a BioImage.IO package needs bioimageio.spec: pip install "napari-usema[bioimageio]"'
        ) from None
    out = check_output(out, overwrite=overwrite, suffix=".zip", what="BioImage.IO package")
    raw = _test_input(loaded, sample)  # (1, C, side, side) float32
    with tempfile.TemporaryDirectory(prefix="usema-bioimageio-") as tmp:
        folder = Path(tmp)
        logits = _test_output(loaded, raw)
        np.save(folder / "test_input.npy", raw)
        np.save(folder / "test_output.npy", logits)
        torch.save({k: v.detach().cpu().float() for k, v in loaded.model.state_dict().items()}, folder / WEIGHTS_FILE)
        _cover(raw, logits, folder / "cover.png")
        (folder / "README.md").write_text(_documentation(loaded, name))
        # What napari-usema reads back (io/package.py): no YAML parser, no code from the package.
        (folder / METADATA_FILE).write_text(json.dumps(loaded.metadata.to_dict(), indent=1))
        description = _describe(loaded, name, folder, onnx=False)  # checked before the slow ONNX export
        if onnx:
            export_onnx(loaded, folder / "weights.onnx")
            description = _describe(loaded, name, folder, onnx=True)
        made = folder / "package.zip"
        save_bioimageio_package(description, output_path=made)
        with atomic_write(out, overwrite=overwrite) as part:  # whole or not at all, beside its final name
            shutil.copyfile(made, part)
    return out


def package_name(name: str) -> str:
    """``name`` in the characters a package name may hold (``nuclei.ft1`` -> ``nuclei-ft1``)."""
    return re.sub(r"[^A-Za-z0-9_+\- ()]", "-", name).strip("-") or "model"


def class_ids(names: tuple[str, ...]) -> list[str]:
    """One identifier per class name, unique (``"small bowel"`` -> ``small_bowel``, ``"1st"`` -> ``c_1st``);
    the names themselves stay in the tensor's description and in ``napari_usema.json``."""
    out: list[str] = []
    for name in names:
        ident = re.sub(r"\W", "_", str(name)) or "class"
        ident = f"c_{ident}" if not ident[0].isalpha() else ident
        while ident in out:
            ident += "_"
        out.append(ident)
    return out


def _test_input(loaded: LoadedModel, sample: np.ndarray) -> np.ndarray:
    image = np.asarray(sample, np.float32)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = np.moveaxis(image[..., :3], -1, 0)
    elif image.ndim == 2:
        image = image[None]
    else:
        raise ValueError(f"the sample must be one grey (H, W) or RGB (H, W, 3) image, got shape {image.shape}")
    step = size_step(loaded.metadata.config)
    side = -(-SAMPLE_SIDE // step) * step  # at least 256, a multiple of the graph's size step
    if min(image.shape[-2:]) < side:
        raise ValueError(f"the sample must be at least {side}x{side} pixels for this model, got {image.shape[-2:]}")
    channels = loaded.metadata.input_channels
    if image.shape[0] != channels:
        if image.shape[0] != 1:
            raise ValueError(f"a {image.shape[0]}-channel sample for a {channels}-channel model")
        image = np.repeat(image, channels, axis=0)  # grey to a colour model: three equal channels
    return image[None, :, :side, :side].copy()


def _test_output(loaded: LoadedModel, raw: np.ndarray) -> np.ndarray:
    """The logits napari-usema's own normalisation and network give for ``raw``, as a runner must."""
    stats = measure(raw[0], loaded.metadata.normalization)
    x = torch.from_numpy(stats.apply(raw[0])[None])
    network = copy.deepcopy(loaded.model).cpu().float().eval()  # never the network another thread runs
    with torch.no_grad():
        return network(x).numpy()


def _describe(loaded: LoadedModel, name: str, folder: Path, onnx: bool) -> Any:
    from bioimageio.spec.model import v0_5 as spec

    meta = loaded.metadata
    config = meta.config
    recipe = meta.normalization
    if recipe.method != "percentile":
        raise ValueError(f"only percentile normalisation has a BioImage.IO form; this model uses {recipe.method!r}")
    step = size_step(config)
    batch, y, x = spec.BatchAxis(), spec.AxisId("y"), spec.AxisId("x")
    channels = ["red", "green", "blue"] if config.in_channels == 3 else [f"channel{i}" for i in range(config.in_channels)]
    preprocessing = [
        spec.ScaleRangeDescr(
            kwargs=spec.ScaleRangeKwargs(axes=(y, x), min_percentile=recipe.low, max_percentile=recipe.high, eps=EPS)
        )
    ]
    inputs = [
        spec.InputTensorDescr(
            id=spec.TensorId("raw"),
            description="the image as acquired; grey images as three equal channels for a 3-channel model",
            axes=[
                batch,
                spec.ChannelAxis(channel_names=[spec.Identifier(c) for c in channels]),
                spec.SpaceInputAxis(id=y, size=spec.ParameterizedSize(min=step, step=step)),
                spec.SpaceInputAxis(id=x, size=spec.ParameterizedSize(min=step, step=step)),
            ],
            test_tensor=spec.FileDescr(source=folder / "test_input.npy"),
            preprocessing=preprocessing,
        )
    ]
    outputs = [
        spec.OutputTensorDescr(
            id=spec.TensorId("logits"),
            description=f"per-pixel logits of {', '.join(meta.class_names)} (softmax gives probabilities)",
            axes=[
                batch,
                spec.ChannelAxis(channel_names=[spec.Identifier(c) for c in class_ids(meta.class_names)]),
                spec.SpaceOutputAxis(id=y, size=spec.SizeReference(tensor_id=spec.TensorId("raw"), axis_id=y)),
                spec.SpaceOutputAxis(id=x, size=spec.SizeReference(tensor_id=spec.TensorId("raw"), axis_id=x)),
            ],
            test_tensor=spec.FileDescr(source=folder / "test_output.npy"),
        )
    ]
    authors = [spec.Author(name="napari-usema contributors")]
    architecture = spec.ArchitectureFromLibraryDescr(
        callable=spec.Identifier("usema_network"), import_from="napari_usema.interop.network", kwargs=config.to_dict()
    )
    weights = spec.WeightsDescr(
        pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
            source=folder / WEIGHTS_FILE, architecture=architecture, pytorch_version=spec.Version(torch.__version__.split("+")[0])
        ),
        onnx=spec.OnnxWeightsDescr(source=folder / "weights.onnx", opset_version=18, parent="pytorch_state_dict")
        if onnx
        else None,
    )
    data = str(meta.provenance.get("data", ""))
    cite = [spec.CiteEntry(text=text, url=url) for text, _, url in CITATIONS]
    cite += [spec.CiteEntry(text=text, doi=spec.Doi(doi)) for key, (text, doi) in DATA_CITATIONS.items() if key in data]
    return spec.ModelDescr(
        name=f"USEMA {package_name(name)}",
        description=f"USEMA ({config.num_stages} stages, widths {list(config.widths)}) for {meta.task} segmentation: "
        f"{', '.join(meta.class_names[1:])}. Made with napari-usema.",
        covers=[spec.FileDescr(source=folder / "cover.png")],
        documentation=spec.FileDescr(source=folder / "README.md"),
        authors=authors,
        cite=cite,
        license=spec.LicenseId("CC-BY-4.0"),
        tags=["napari-usema", "usema", "sema", meta.task, *meta.class_names[1:]],
        inputs=inputs,
        outputs=outputs,
        weights=weights,
        attachments=[spec.FileDescr(source=folder / METADATA_FILE)],
    )


def _cover(raw: np.ndarray, logits: np.ndarray, path: Path) -> None:
    """The test input beside the model's most likely class: a 2:1 picture."""
    import imageio.v3 as iio

    image = raw[0].mean(axis=0)
    low, high = np.percentile(image, [1, 99.8])
    grey = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
    classes = np.argmax(logits[0], axis=0)
    palette = np.array([[0, 0, 0], [255, 214, 0], [0, 220, 255], [255, 43, 214], [0, 224, 90]], np.uint8)
    left = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=-1)
    right = palette[classes % len(palette)]
    iio.imwrite(path, np.concatenate([left, right], axis=1))


def _shareable(value: str | int | float) -> str | int | float:
    """A provenance value fit for a package others download: an absolute path on this machine (a
    fine-tune's parent, its data) becomes the file's name."""
    if isinstance(value, str) and re.match(r"^[A-Za-z]:[\\/]", value):
        return PureWindowsPath(value).name or value
    if isinstance(value, str) and value.startswith(("/", "~")):
        return Path(value).name or value
    return value


def _documentation(loaded: LoadedModel, name: str) -> str:
    meta = loaded.metadata
    recipe = meta.normalization
    provenance = {k: _shareable(v) for k, v in meta.provenance.items() if isinstance(v, str | int | float) and len(str(v)) < 200}
    lines = [
        f"# USEMA {name}",
        "",
        f"A USEMA network (a UNet with SEMA attention) for **{meta.task}** segmentation, made with "
        "[napari-usema](https://github.com/napari-usema/napari-usema).",
        "",
        "## Input",
        f"`raw`: (batch, {meta.input_channels} channels, y, x), intensities as acquired. Each channel is scaled "
        f"between its {recipe.low:g}th and {recipe.high:g}th percentile (the package's `scale_range`). Grey images "
        "go in as three equal channels. Height and width are multiples of "
        f"{size_step(meta.config)} pixels; tile larger images (napari-usema does, with overlap).",
        "",
        "## Output",
        f"`logits`: (batch, {len(meta.class_names)}, y, x) for {', '.join(meta.class_names)}.",
    ]
    if meta.task == "instance":
        lines += [
            "",
            "Objects come from a seeded watershed on the interior and boundary probabilities, which this package "
            "cannot express: use `usema predict` or the napari plugin for labels, or threshold the interior "
            "probability for a first look.",
        ]
    if meta.object_diameter:
        lines += ["", f"Objects of about {meta.object_diameter:.0f} px across were what it learned."]
    lines += ["", "## Provenance", "", "```json", json.dumps(provenance, indent=1), "```", ""]
    return "\n".join(lines)
