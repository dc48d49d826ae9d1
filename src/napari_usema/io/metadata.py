"""What a checkpoint says about its model: config, task, classes, normalisation, scale, post-process.

The lowest engine layer that needs these: inference reads the normalisation recipe and scales from
here, and :func:`migrate_metadata` is the one place that knows older formats.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._checks import in_range
from ..model.config import USEMAConfig
from ..postprocess.config import WatershedConfig

Method = Literal["percentile", "zscore", "none"]


@dataclass(frozen=True)
class NormalizationRecipe:
    """How raw intensities become network inputs.

    Attributes:
        method: ``percentile`` maps the ``low``/``high`` percentiles of each channel to 0/1;
            ``zscore`` subtracts the mean and divides by the standard deviation; ``none`` casts.
        low: Lower percentile (percentile method).
        high: Upper percentile (percentile method).
    """

    method: Method = "percentile"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if self.method not in ("percentile", "zscore", "none"):
            raise ValueError(f"unknown normalisation method {self.method!r}; use percentile, zscore or none")
        if self.method == "percentile" and not 0 <= self.low < self.high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormalizationRecipe:
        return cls(**data)


def check_scale(scale: float) -> float:
    """A usable ``input_scale``: finite, in (0, 4]."""
    if not (isinstance(scale, int | float) and math.isfinite(scale) and 0 < scale <= 4):
        raise ValueError(f"input_scale must be a number in (0, 4], got {scale!r}")
    return float(scale)


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """Usable multi-scale factors: one or more finite numbers in (0, 4], as a tuple of floats."""
    try:
        factors = tuple(scales)
    except TypeError:
        factors = ()
    if not factors or not all(isinstance(f, int | float) and math.isfinite(f) and 0 < f <= 4 for f in factors):
        raise ValueError(f"scales must be one or more numbers in (0, 4], got {scales!r}")
    return tuple(float(f) for f in factors)


# 2: adds input_scale (version 1 files are read as input_scale 1).
# 3: adds object_diameter (older files: unknown, None; the bundled models were re-saved with theirs).
FORMAT_VERSION = 3
METADATA_KEY = "napari_usema"
Task = Literal["instance", "semantic"]
INSTANCE_CLASSES = ("background", "interior", "boundary")


class CheckpointError(ValueError):
    """A checkpoint could not be read; the message says why and what to do."""


@dataclass(frozen=True)
class CheckpointMetadata:
    """Everything needed to rebuild and use a model, stored beside its weights.

    Attributes:
        config: The network's hyper-parameters.
        task: ``instance`` (3 classes, watershed post-process) or ``semantic`` (argmax).
        class_names: One name per output channel.
        normalization: How raw intensities are mapped to inputs.
        provenance: Where the weights came from: data, steps, metrics, parent checkpoint.
        input_scale: Images are resized by this factor before the network and its outputs resized
            back (0.5: the model works at half resolution).
        postprocess: The instance post-process this model was tuned with (fields of
            :class:`WatershedConfig`, e.g. ``{"interior_threshold": 0.9}``); empty: the defaults. An
            optional field, so files written before it existed and readers that predate it both work.
        test_scales: The multi-scale test-time augmentation this model was tuned with (factors on
            ``input_scale``, :attr:`TilingConfig.scales`); ``(1.0,)``: one pass. Optional, like
            ``postprocess``.
        object_diameter: Median diameter, in the training images' pixels, of the objects this model was
            trained on (cellpose's ``diam_mean``); inference resizes an image whose objects are another
            size by ``object_diameter / diameter``. None: unknown (files before format 3).
    """

    config: USEMAConfig
    task: Task = "instance"
    class_names: tuple[str, ...] = INSTANCE_CLASSES
    normalization: NormalizationRecipe = field(default_factory=NormalizationRecipe)
    provenance: dict[str, Any] = field(default_factory=dict)
    input_scale: float = 1.0
    postprocess: dict[str, Any] = field(default_factory=dict)
    test_scales: tuple[float, ...] = (1.0,)
    object_diameter: float | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "input_scale", check_scale(self.input_scale))
        except ValueError as err:
            raise CheckpointError(str(err)) from None
        if self.task not in ("instance", "semantic"):
            raise CheckpointError(f"task must be 'instance' or 'semantic', got {self.task!r}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if len(self.class_names) != self.config.out_channels:
            raise CheckpointError(f"{len(self.class_names)} class names for a model with {self.config.out_channels} outputs")
        if self.task == "instance" and self.config.out_channels != 3:
            raise CheckpointError("instance models predict 3 classes (background, interior, boundary)")
        try:
            object.__setattr__(self, "test_scales", check_scales(self.test_scales))
        except ValueError as err:
            raise CheckpointError(f"test_scales: {err}") from None
        if self.object_diameter is not None:
            try:
                in_range("object_diameter", self.object_diameter, 0, low_open=True)
            except ValueError as err:
                raise CheckpointError(str(err)) from None
            object.__setattr__(self, "object_diameter", float(self.object_diameter))
        known = {f.name for f in dataclasses.fields(WatershedConfig)}
        unknown = sorted(set(self.postprocess) - known)
        if unknown:
            raise CheckpointError(f"unknown post-process setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        try:
            self.watershed()  # the values' types and ranges, checked now rather than after inference
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"the stored post-process is invalid: {err}") from None

    def watershed(self) -> WatershedConfig:
        """The post-process to start from: the defaults with this model's tuned values applied."""
        return WatershedConfig().replace(**self.postprocess)

    @property
    def input_channels(self) -> int:
        return self.config.in_channels

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "task": self.task,
            "class_names": list(self.class_names),
            "input_channels": self.input_channels,
            "normalization": self.normalization.to_dict(),
            "provenance": self.provenance,
            "input_scale": self.input_scale,
            "postprocess": self.postprocess,
            "test_scales": list(self.test_scales),
            "object_diameter": self.object_diameter,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointMetadata:
        data = migrate_metadata(data)
        _expect_types(data)
        try:
            config = USEMAConfig.from_dict(data["config"])
            meta = cls(
                config=config,
                task=data["task"],
                class_names=tuple(data["class_names"]),
                normalization=NormalizationRecipe.from_dict(data["normalization"]),
                provenance=dict(data.get("provenance", {})),
                input_scale=data["input_scale"],
                postprocess=dict(data.get("postprocess", {})),
                test_scales=tuple(data.get("test_scales", (1.0,))),
                object_diameter=data["object_diameter"],
            )
            channels = data["input_channels"]
        except KeyError as err:
            raise CheckpointError(f"checkpoint metadata lacks the field {err.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"checkpoint metadata is invalid: {err}") from None
        if channels != config.in_channels:
            raise CheckpointError(f"metadata says {channels!r} input channels but the config has {config.in_channels}")
        return meta

    def with_provenance(self, **changes: Any) -> CheckpointMetadata:
        return dataclasses.replace(self, provenance={**self.provenance, **changes})


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "config": (dict,),
    "task": (str,),
    "class_names": (list,),
    "normalization": (dict,),
    "provenance": (dict,),
    "input_scale": (int, float),
    "postprocess": (dict,),
    "test_scales": (list,),
    "input_channels": (int,),
}


def _expect_types(data: dict[str, Any]) -> None:
    """Each stored field of the JSON type it must have, before anything converts it (a string of class
    names would otherwise be read one letter at a time)."""
    names = {list: "a list", dict: "an object", str: "a string", int: "an integer", float: "a number"}
    for key, types in _FIELD_TYPES.items():
        if key in data and (not isinstance(data[key], types) or isinstance(data[key], bool)):
            wanted = " or ".join(names[t] for t in types)
            raise CheckpointError(f"checkpoint metadata field {key!r} must be {wanted}, got {data[key]!r}")


def migrate_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """Bring metadata of any known format version up to :data:`FORMAT_VERSION`.

    The one place that knows about old formats. Version 1 is the first; a newer version than this
    code knows is refused rather than guessed at.
    """
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint metadata must be a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError("checkpoint metadata has no integer 'format_version'")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format {version} is newer than this napari-usema understands ({FORMAT_VERSION}); upgrade napari-usema"
        )
    if version < 1:
        raise CheckpointError(f"unknown checkpoint format version {version}")
    data = dict(data)
    if version == 1:
        data["input_scale"] = 1.0  # version 1 models all ran at the image's own resolution
        data["format_version"] = version = 2
    if version == 2:
        data["object_diameter"] = None  # not recorded: --diameter then needs it given (usema info says so)
        data["format_version"] = 3
    return data
