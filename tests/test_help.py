"""Every setting is explained once (``napari_usema._help``): in ``usema --help`` and in napari's tooltips."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from napari_usema._help import HELP
from napari_usema.cli.main import build_parser

# The settings each front end offers, by HELP key.
IN_PREDICT = {
    "model", "axes", "channel", "device", "precision", "max_tile", "tile", "overlap", "batch", "compile", "tta", "scales",
    "diameter", "stitch", "track", "link_iou", "probabilities", "mode", "interior_threshold", "foreground_threshold", "min_size",
    "fill_holes",
}  # fmt: skip
IN_FINETUNE = {"steps", "lr"}


def help_of(*command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return flat(sub.choices[command[0]].format_help())


def flat(text: str) -> str:
    """``text`` without whitespace: argparse wraps lines anywhere, hyphens included."""
    return re.sub(r"\s", "", text)


def test_the_command_line_help_uses_the_shared_texts() -> None:
    predict, finetune = help_of("predict"), help_of("finetune")
    for key in IN_PREDICT:
        assert flat(HELP[key]) in predict, key
    for key in IN_FINETUNE:
        assert flat(HELP[key]) in finetune, key
    assert IN_PREDICT | IN_FINETUNE == set(HELP)  # no text written for nothing


@pytest.mark.gui
def test_every_control_of_the_widget_has_a_tooltip_and_shared_ones_match(make_napari_viewer, tmp_path: Path) -> None:
    pytest.importorskip("napari")
    from magicgui.widgets import Container, Label
    from magicgui.widgets.bases import ButtonWidget, ValueWidget

    from napari_usema._widgets.main import UsemaWidget

    widget = UsemaWidget(make_napari_viewer(), output_folder=tmp_path)
    sections = [widget.segment, widget.segment.run_options, widget.postprocess, widget.correct, widget.finetune, widget.attention]
    missing = []

    def visit(container: Container, where: str) -> None:
        for control in container:
            if isinstance(control, Container):
                visit(control, where)
            elif isinstance(control, ValueWidget | ButtonWidget) and not isinstance(control, Label):
                if not (control.tooltip or "").strip():
                    missing.append(f"{where}: {control.label or getattr(control, 'text', '') or control.name}")

    for section in sections:
        visit(section, type(section).__name__)
    assert not missing, f"controls without a tooltip: {missing}"
    s, p, f = widget.segment, widget.postprocess, widget.finetune
    shared = {
        "tile": s.tile, "overlap": s.overlap, "batch": s.batch, "device": s.device, "precision": s.run_options.precision,
        "axes": s.axes,
        "channel": s.channel, "diameter": s.diameter, "scales": s.multiscale, "link_iou": s.link_iou,
        "mode": p.mode, "interior_threshold": p.interior, "min_size": p.min_size, "steps": f.steps, "lr": f.lr,
    }  # fmt: skip
    for key, control in shared.items():
        assert control.tooltip == HELP[key], key
    assert re.search(r"\w", widget.segment.run_button.tooltip)
