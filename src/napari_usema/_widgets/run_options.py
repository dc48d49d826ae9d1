"""The Segment tab's less-used settings, folded away under "More options": device, tiling, test-time
augmentation and which layers a run makes. Folded, the tab fits napari's default window down to its
status line; unfolded, it scrolls."""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox
from superqt import QCollapsible

from napari_usema._help import HELP
from napari_usema._widgets.segment_choices import MULTISCALE, scales_label
from napari_usema.inference.devices import available_devices
from napari_usema.inference.tiling import PRECISIONS, TilingConfig


class RunOptions(Container):
    """Device, precision, tile, overlap, batch, mirror and multi-scale TTA, and the run's extra layers."""

    def __init__(self) -> None:
        defaults = TilingConfig()
        self.device = ComboBox(label="Device", choices=available_devices(), value=defaults.device, tooltip=HELP["device"])
        self.tile = SpinBox(label="Tile", value=defaults.tile, min=16, max=8192, step=16, tooltip=HELP["tile"])
        self.overlap = FloatSpinBox(label="Overlap", value=defaults.overlap, min=0.0, max=0.9, step=0.05, tooltip=HELP["overlap"])
        self.batch = SpinBox(label="Batch", value=defaults.batch, min=0, max=256, tooltip=HELP["batch"])
        self.batch.native.setSpecialValueText("auto")  # 0: sized to the device
        self.precision = ComboBox(
            label="Precision", choices=list(PRECISIONS), value=defaults.precision, tooltip=HELP["precision"]
        )
        self.tta = CheckBox(text="Mirror TTA (4x slower)", value=defaults.tta, tooltip=HELP["tta"])
        self.scale_choices = dict(MULTISCALE)
        self.multiscale = ComboBox(label="Multi-scale TTA", choices=list(self.scale_choices), value="off", tooltip=HELP["scales"])
        self.show_probabilities = CheckBox(text="Add probability layer", value=False, tooltip=HELP["probabilities"])
        self.new_layer = CheckBox(
            text="New layer for each run", value=False, tooltip="keep each run's labels instead of updating the last layer"
        )
        self.mark_changes = CheckBox(
            text="Mark what a re-run changed", value=False,
            tooltip="a layer with the objects a new run added (green) and removed (magenta) against the last run's labels",
        )  # fmt: skip
        super().__init__(widgets=[
            self.device, self.precision, self.tile, self.overlap, self.batch, self.tta, self.multiscale,
            self.show_probabilities, self.new_layer, self.mark_changes,
        ])  # fmt: skip
        self.margins = (0, 0, 0, 0)
        self.fold = QCollapsible("More options")  # device, tiling, test-time augmentation, layers
        self.fold.addWidget(self.native)

    def tiling(self) -> TilingConfig:
        return TilingConfig(
            tile=self.tile.value,
            overlap=self.overlap.value,
            batch=self.batch.value,
            tta=self.tta.value,
            scales=self.scale_choices[self.multiscale.value],
            device=self.device.value,
            precision=self.precision.value,
            # As on the command line: the default tile is fitted to the image, a tile the user set is kept.
            clamp_tile=self.tile.value == TilingConfig.tile,
        )

    def use_scales(self, scales: tuple[float, ...]) -> None:
        """Start from a model's own multi-scale choice (``test_scales``), adding it to the list if new."""
        label = scales_label(scales)
        if label not in self.scale_choices:
            self.scale_choices[label] = scales
            self.multiscale.choices = list(self.scale_choices)
        self.multiscale.value = label
