"""No deprecation warning from our code or our choice of dependencies, through the whole plugin.

pyproject.toml turns any DeprecationWarning, PendingDeprecationWarning or FutureWarning attributed to a
``napari_usema`` module into an error in every test. This test drives the plugin as napari loads it (its
manifest's sample and widget), and fails on such a warning even where a library attributes it to our
file without raising, and on napari's toast against a deprecated Qt binding (PyQt5).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

pytestmark = pytest.mark.gui
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
PACKAGE = str(Path(__file__).resolve().parents[1] / "src" / "napari_usema")


def test_the_plugin_end_to_end_warns_of_nothing_deprecated(make_napari_viewer, qtbot, intensity_model) -> None:
    from napari.utils.notifications import notification_manager

    toasts: list[str] = []
    notification_manager.notification_ready.connect(lambda n: toasts.append(str(n.message)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        viewer = make_napari_viewer(show=True)
        viewer.open_sample("napari-usema", "nuclei")
        _, widget = viewer.window.add_plugin_dock_widget("napari-usema", "Segment, correct and fine-tune")
        qtbot.wait(200)
        widget.segment.use_model(intensity_model)
        widget.segment.run()
        qtbot.waitUntil(lambda: widget.segment.worker is None, timeout=120_000)
        widget.postprocess.status.value = ""
        widget.postprocess.min_size.value = widget.postprocess.min_size.value + 5  # a re-tune, after its debounce
        qtbot.waitUntil(lambda: "re-computed" in widget.postprocess.status.value, timeout=60_000)
        for index in range(widget.tabs.count()):
            widget.tabs.setCurrentIndex(index)
            qtbot.wait(50)
    labels = viewer.layers["nuclei labels"].data
    assert np.asarray(labels).max() > 0  # the run really happened
    ours = [
        f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}"
        for w in caught
        if issubclass(w.category, DEPRECATIONS) and (str(w.filename).startswith(PACKAGE) or "napari_usema" in str(w.filename))
    ]
    assert not ours, "\n".join(ours)
    deprecated = [t for t in toasts if "deprecat" in t.lower()]
    assert not deprecated, f"napari warned: {deprecated} (install napari-usema[all], which brings PyQt6)"
