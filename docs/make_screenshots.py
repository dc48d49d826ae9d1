"""Make the README's screenshots headless: `xvfb-run -a python docs/make_screenshots.py`.

Each picture is the real napari window, at the size napari opens it (no saved settings: its own
default), with the USEMA widget in use on the bundled sample: what a new user sees.
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
    app.processEvents()
    size = viewer.window._qt_window.size()
    print(f"napari's default window: {size.width()}x{size.height()}", flush=True)
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

    # Correct: a few one-click edits on the nuclei sample, then two split seeds waiting for their confirm.
    widget.tabs.setCurrentIndex(2)
    correct = widget.correct
    correct.active.value = True
    labels = widget.segment.state.labels
    data = np.asarray(labels.data).copy()  # the layer's array changes in place with each edit
    ids = [i for i in np.unique(data[60:200, 60:260]) if i]
    correct.click(_centre(data == ids[0]), {"alt"})  # remove one
    correct.click(_centre(data == ids[0]))  # and add it back from one click (on a worker thread)
    wait(app, lambda: correct.worker is None)
    assert correct.status.value.startswith("added"), correct.status.value
    big = max(ids[1:], key=lambda i: (data == i).sum())
    ys, xs = np.nonzero(data == big)
    order = np.argsort(xs)
    correct.click((int(ys[order[len(order) // 5]]), int(xs[order[len(order) // 5]])), {"shift"})
    correct.click((int(ys[order[4 * len(order) // 5]]), int(xs[order[4 * len(order) // 5]])), {"shift"})
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari 0.9 moved it
    camera.center, camera.zoom = (130, 160), 2.2
    app.processEvents()
    shoot(viewer, "correct.png")
    correct.clear_seeds()
    viewer.reset_view()

    widget.tabs.setCurrentIndex(3)  # Fine-tune trains on the corrections by default
    widget.reset_choices()
    widget.finetune.steps.value = 20
    widget.finetune.folder.value = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/usema-screenshot-models")
    widget.finetune.run()
    wait(app, lambda: widget.finetune.worker is None)
    app.processEvents()
    shoot(viewer, "finetune.png")

    widget.tabs.setCurrentIndex(4)
    explorer = widget.attention
    widget.segment.model.value = "nuclei"  # back to the bundled model
    explorer.pick.value = True
    explorer.query((120, 180))
    wait(app, lambda: explorer.worker is None)
    viewer.layers.selection.active = viewer.layers["attention maps"]
    for name in ("split seeds", labels.name):
        if name in viewer.layers:
            viewer.layers[name].visible = False
    viewer.dims.set_current_step(0, 2)  # a stage-1 head: its window is visible at this zoom
    explorer.budget.value = 20
    explorer.run_dispersion()
    wait(app, lambda: explorer.worker is None)
    shoot(viewer, "attention.png")
    viewer.close()

    # An endoscopy frame with the polyps model, which runs its stored multi-scale TTA by default.
    viewer, widget = open_demo("colonoscopy", show=True)
    widget.segment.run()
    wait(app, lambda: widget.segment.worker is None)
    widget.segment.style.value = "outline"  # the plugin's own high-contrast classes, as borders
    viewer.reset_view()
    app.processEvents()
    shoot(viewer, "segment_polyps.png")
    viewer.close()


def _centre(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its border: where a user clicks an object."""
    from scipy import ndimage as ndi

    return tuple(int(v) for v in np.unravel_index(np.argmax(ndi.distance_transform_edt(mask)), mask.shape))


if __name__ == "__main__":
    main()
