"""The Attention tab as a biologist meets it: export after one click, plots in napari's theme with a hint,
the name of the map on screen, texts in words, and a tab that fits napari's window."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")

from napari_usema.analysis import dispersion_report
from napari_usema.analysis.dispersion import ExperimentStep
from napari_usema.analysis.dispersion_report import histogram_figure, statistics_figure, write_report

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(dock):
    """The shared dock (conftest.py), on its Attention tab."""
    dock[1].tabs.setCurrentIndex(4)
    return dock


def query(qtbot, widget, checkpoint: Path, point: tuple[int, int] = (120, 200)):
    """The maps of one clicked pixel, as a user gets them; returns the explorer."""
    widget.segment.use_checkpoint(checkpoint)
    explorer = widget.attention
    explorer.query(point)
    qtbot.waitUntil(lambda: explorer.worker is None and "attention maps" in explorer.viewer.layers, timeout=60_000)
    return explorer


def measure(qtbot, explorer) -> None:
    explorer.budget.value = 5
    explorer.run_dispersion()
    qtbot.waitUntil(lambda: explorer.worker is None, timeout=120_000)


def stage_stats(value: float) -> dict:
    """One stage's statistics with every value ``value`` (NaN: what a failed measurement leaves)."""
    head = {"normalized_entropy": value, "n_times_max": value, "near_uniform_fraction": value, "rows": 0}
    return {"stage": 0, "kind": "window", "tokens": 256, "keys_per_row": 16, "heads": [{**head, "histogram": [0] * 50}]}


# --- export -------------------------------------------------------------------------------------
def test_export_after_a_query_alone_writes_complete_files(dock, qtbot, tiny_instance_checkpoint: Path, tmp_path: Path) -> None:
    viewer, widget = dock
    explorer = query(qtbot, widget, tiny_instance_checkpoint)
    assert not explorer.steps  # a click alone: no dispersion measured
    explorer.folder.value = out = tmp_path / "export"
    paths = explorer.export()
    assert [p.name for p in paths] == ["dispersion.json", "attention_120_200.tif"]  # no plots without a measurement
    report = json.loads((out / "dispersion.json").read_text())
    assert report["steps"] == [] and list(report["points"]) == ["120,200"]
    stack = tifffile.imread(out / "attention_120_200.tif")
    assert stack.shape[0] == len(viewer.layers["attention maps"].metadata["planes"])
    assert sorted(p.name for p in out.iterdir()) == ["attention_120_200.tif", "dispersion.json"]  # no temporaries


def test_export_with_nothing_refuses_and_writes_nothing(dock, tmp_path: Path, monkeypatch) -> None:
    _, widget = dock
    errors: list[str] = []
    monkeypatch.setattr("napari_usema._widgets.attention.show_error", errors.append)
    widget.attention.folder.value = out = tmp_path / "export"
    assert widget.attention.export() is None
    assert "click" in errors[-1] and not out.exists()


def test_export_asks_before_replacing(dock, qtbot, tiny_instance_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    _, widget = dock
    explorer = query(qtbot, widget, tiny_instance_checkpoint)
    explorer.folder.value = out = tmp_path / "export"
    explorer.export()
    (out / "dispersion.json").write_text("earlier")
    asked: list[list[Path]] = []
    # On the class: a magicgui Container takes instance attributes for its widgets.
    monkeypatch.setattr(type(explorer), "_confirm_replace", lambda self, existing: asked.append(existing) or False)
    assert explorer.export() is None  # the user said no
    assert (out / "dispersion.json").read_text() == "earlier" and "nothing was written" in explorer.status.value
    monkeypatch.setattr(type(explorer), "_confirm_replace", lambda self, existing: True)
    assert explorer.export() and json.loads((out / "dispersion.json").read_text())["points"]
    assert {p.name for p in asked[0]} == {"dispersion.json", "attention_120_200.tif"}


def test_a_report_appears_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    steps = [ExperimentStep(16, [stage_stats(math.nan)], None, None)]
    paths = write_report(tmp_path / "nan", steps, {}, {})  # NaN statistics: the log axis used to refuse to draw
    assert [p.name for p in paths] == ["dispersion.json", "dispersion_vs_n.png", "dispersion_histogram.png"]
    for figure in (statistics_figure([]), histogram_figure([])):  # nothing measured: empty panels, no error
        figure.savefig(io.BytesIO(), format="png")

    def broken(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(dispersion_report, "_write_stack", broken)
    points = {(1, 2): []}
    with pytest.raises(OSError, match="disk full"):
        write_report(tmp_path / "failed", [ExperimentStep(16, [stage_stats(1.0)], None, None)], {}, points)
    assert not (tmp_path / "failed").exists()  # no JSON, no plot, no temporary, not even the folder


# --- plots --------------------------------------------------------------------------------------
def test_plots_take_naparis_theme_and_show_a_hint_before_data(dock, qtbot) -> None:
    from matplotlib.colors import to_hex
    from napari.settings import get_settings
    from napari.utils.theme import get_theme

    viewer, widget = dock
    for plot, theme_name in ((widget.attention.plot, viewer.theme), (widget.finetune.plot, get_settings().appearance.theme)):
        background = get_theme(theme_name).background.as_hex()
        assert plot.hint_text is not None and plot.hint_text.get_text() == plot.hint
        assert to_hex(plot.figure.get_facecolor()) == background
        plot.canvas.draw()
        pixel = np.asarray(plot.canvas.buffer_rgba())[2, 2, :3]  # the corner, as drawn on screen
        assert to_hex(pixel / 255) == background
    assert "Measure spread" in widget.attention.plot.hint and "loss" in widget.finetune.plot.hint
    viewer.theme = "light" if viewer.theme != "light" else "dark"  # the plot follows the viewer
    assert to_hex(widget.attention.plot.figure.get_facecolor()) == get_theme(viewer.theme).background.as_hex()


def test_the_plot_replaces_its_hint_once_measured(dock, qtbot, tiny_instance_checkpoint: Path) -> None:
    _, widget = dock
    widget.segment.use_checkpoint(tiny_instance_checkpoint)
    measure(qtbot, widget.attention)
    plot = widget.attention.plot
    assert plot.hint_text is None and len(plot.figure.axes) == 2
    widget.finetune.plot.add(1, 0.5)
    assert widget.finetune.plot.hint_text is None and widget.finetune.plot.losses == [0.5]


# --- words ----------------------------------------------------------------------------------------
def test_the_plane_name_follows_the_slider(dock, qtbot, tiny_instance_checkpoint: Path) -> None:
    viewer, widget = dock
    image_labels = viewer.layers["nuclei"].axis_labels
    explorer = query(qtbot, widget, tiny_instance_checkpoint)
    maps = viewer.layers["attention maps"]
    names = maps.metadata["planes"]  # e.g. "stage 1 (window) head 0"
    assert explorer.plane.visible and maps.axis_labels[0] == "map"  # napari's slider is named
    assert viewer.layers["nuclei"].axis_labels == image_labels  # the image keeps its own axes
    for index in (0, len(names) - 1, 2):
        viewer.dims.set_current_step(0, index)
        stage, head = names[index].split()[1], names[index].split()[-1]
        assert explorer.plane.value.startswith(f"Map {index}/{len(names) - 1}: stage {stage} · head {head}")
    viewer.layers.remove("attention maps")
    assert not explorer.plane.visible


def test_texts_say_what_the_numbers_mean(dock, qtbot, tiny_instance_checkpoint: Path) -> None:
    _, widget = dock
    explorer = query(qtbot, widget, tiny_instance_checkpoint)
    assert "Global-mean weight per token" not in explorer.mean_info.value
    assert "whole image's average" in explorer.mean_info.value and "1/90,220 at stage 0" in explorer.mean_info.value
    assert "e-05" in explorer.mean_info.tooltip  # the exact weights, for researchers
    assert "where that head looks" in explorer.status.value
    measure(qtbot, explorer)
    text, exact = explorer.status.value.split("\n")
    assert "1 = even over everything" in text and "lower = more focused" in text
    assert exact.startswith("entropy/log N")


# --- layout -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [None, (1089, 630)], ids=["default", "1089x630"])
def test_the_tab_fits_the_window(dock, qtbot, tiny_instance_checkpoint: Path, size) -> None:
    from qtpy.QtWidgets import QScrollArea

    viewer, widget = dock
    if size is not None:
        viewer.window.resize(*size)
    explorer = query(qtbot, widget, tiny_instance_checkpoint)
    measure(qtbot, explorer)
    qtbot.wait(200)  # let the dock lay the new texts out
    scroll = explorer.native.parentWidget()
    while not isinstance(scroll, QScrollArea):
        scroll = scroll.parentWidget()
    assert scroll.verticalScrollBar().maximum() == 0  # nothing below the fold: status and Export in view
    if size is not None:  # wide enough for napari's own docks and ours: no sideways scrolling either
        assert scroll.horizontalScrollBar().maximum() == 0
    status = explorer.status.native
    assert not status.visibleRegion().isEmpty() and status.visibleRegion().boundingRect().height() == status.height()
