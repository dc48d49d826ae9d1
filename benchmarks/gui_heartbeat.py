"""GUI responsiveness while a 2048² image is segmented on the CPU, and the live-slider time.

A QTimer beats every 10 ms in napari's GUI thread while the Segment widget works in its worker
thread; the longest gap between beats is how long the GUI froze (target <= 200 ms). Then one
post-process slider change is timed (target <= 1 s for 2048²).

Run headless: `xvfb-run -a python benchmarks/gui_heartbeat.py [MODEL]` (default: the bundled nuclei).
Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main(model: str = "nuclei", side: int = 2048) -> None:
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_usema._sample_data import load_nuclei
    from napari_usema.cli.demo import open_demo

    viewer, widget = open_demo("nuclei", model=model, show=True)
    app = QApplication.instance()
    tile = load_nuclei()
    image = np.tile(tile, (-(-side // tile.shape[0]), -(-side // tile.shape[1])))[:side, :side]
    viewer.layers[0].data = image
    beats: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    timer.start()
    start = time.perf_counter()
    widget.segment.run()
    while widget.segment.worker is not None:
        app.processEvents()
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    timer.stop()
    gaps = np.diff(beats) * 1000
    slider_times = []
    for value in (0.6, 0.4, 0.5):
        widget.postprocess.interior.value = value
        slider_times.append(widget.postprocess.apply())
    print(
        json.dumps(
            {
                "bench": "gui_heartbeat",
                "image": side,
                "model": model,
                "segment_s": round(elapsed, 2),
                "beats": len(beats),
                "longest_gap_ms": round(float(gaps.max()), 1),
                "p99_gap_ms": round(float(np.percentile(gaps, 99)), 1),
                "target_gap_ms": 200,
                "slider_postprocess_s": [round(t, 3) for t in slider_times],
                "target_slider_s": 1.0,
                "objects": int(widget.segment.state.labels.data.max()),
            }
        ),
        flush=True,
    )
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:2])
