"""Make the README's screenshots headless: `xvfb-run -a python docs/make_screenshots.py`.

Each picture is the real napari window with the USEMA widget in use on the bundled sample.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "images"


def wait(app, predicate, timeout: float = 600) -> None:
    start = time.time()
    while not predicate():
        app.processEvents()
        time.sleep(0.05)
        if time.time() - start > timeout:
            raise TimeoutError("the widget did not finish in time")


def shoot(viewer, name: str) -> None:
    """Screenshot the whole window, without napari's transient notification toasts."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    QApplication.instance().processEvents()
    viewer.screenshot(str(OUT / name), canvas_only=False)


def main() -> None:
    from qtpy.QtWidgets import QApplication

    from napari_usema.cli.demo import open_demo

    OUT.mkdir(parents=True, exist_ok=True)
    viewer, widget = open_demo("nuclei", show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1400, 900)
    widget.segment.run()
    wait(app, lambda: widget.segment.worker is None)
    labels = widget.segment.state.labels
    app.processEvents()
    shoot(viewer, "segment.png")

    widget.tabs.setCurrentIndex(1)
    widget.postprocess.interior.value = 0.7
    widget.postprocess.apply()  # re-tuning runs on a worker thread
    wait(app, lambda: widget.postprocess.worker is None)
    app.processEvents()
    shoot(viewer, "postprocess.png")

    widget.tabs.setCurrentIndex(2)
    labels = widget.segment.state.labels
    region = np.zeros(labels.data.shape, bool)
    region[:130, :170] = True  # pretend the user corrected the top-left quarter
    viewer.add_shapes(
        [[[0, 0], [0, 170], [130, 170], [130, 0]]],
        shape_type="rectangle",
        name="corrected region",
        face_color="transparent",
        edge_color="yellow",
        edge_width=2,
    )
    widget.reset_choices()
    widget.finetune.labels_layer.value = labels
    widget.finetune.region.value = viewer.layers["corrected region"]
    widget.finetune.steps.value = 20
    widget.finetune.folder.value = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/usema-screenshot-models")
    widget.finetune.run()
    wait(app, lambda: widget.finetune.worker is None)
    app.processEvents()
    shoot(viewer, "finetune.png")

    widget.tabs.setCurrentIndex(3)
    explorer = widget.attention
    widget.segment.model.value = "nuclei"  # back to the bundled model
    explorer.pick.value = True
    explorer.query((120, 180))
    wait(app, lambda: explorer.worker is None)
    viewer.layers.selection.active = viewer.layers["attention maps"]
    for name in ("corrected region", labels.name):
        viewer.layers[name].visible = False
    viewer.dims.set_current_step(0, 2)  # a stage-1 head: its window is visible at this zoom
    explorer.budget.value = 20
    explorer.run_dispersion()
    wait(app, lambda: explorer.worker is None)
    shoot(viewer, "attention.png")
    viewer.close()

    # An endoscopy frame with the polyps model, which runs its stored multi-scale TTA by default.
    viewer, widget = open_demo("colonoscopy", show=True)
    viewer.window._qt_window.resize(1400, 900)
    widget.segment.run()
    wait(app, lambda: widget.segment.worker is None)
    from napari.utils.colormaps import DirectLabelColormap

    polyp = widget.segment.state.labels
    # A yellow outline: the tissue under the polyp stays visible, and red on red would not show.
    polyp.colormap = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: "yellow"})
    polyp.contour, polyp.opacity = 4, 1.0
    viewer.reset_view()
    app.processEvents()
    shoot(viewer, "segment_polyps.png")
    viewer.close()


if __name__ == "__main__":
    main()
