"""One shared model, several threads: segmentation must not notice attention capture or dispersion.

napari's Segment, Attention and Fine-tune tabs run on worker threads and share one LoadedModel.
Attention tools read the network per call (an AttentionTap), never by changing it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from napari_usema.analysis.attention_maps import query_attention
from napari_usema.analysis.dispersion import measure
from napari_usema.inference.pipeline import drive, segment
from napari_usema.inference.tiling import TilingConfig
from napari_usema.io.checkpoint import load_checkpoint

TILING = TilingConfig(tile=32, overlap=0.25, batch=1, device="cpu")


def test_segmentation_is_bit_identical_while_other_threads_capture_and_measure(tiny_instance_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_instance_checkpoint)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(96, 96)).astype(np.float32)
    chw = image[None, :48, :48].copy()
    alone = drive(segment(loaded, image, TILING, keep_probabilities=True))
    maps_alone = query_attention(loaded.model, chw, (20, 30))
    dispersion_alone = measure(loaded.model, chw, full=True)

    # Every thread stops once inside a forward call (before encoder stage 1) until all three are
    # there, so the calls really run at the same time; then they go on together.
    barrier = threading.Barrier(3, timeout=60)
    arrived: set[str] = set()

    def meet(module: torch.nn.Module, args: tuple) -> None:
        name = threading.current_thread().name
        if name not in arrived:
            arrived.add(name)
            barrier.wait()

    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def run(name: str, job) -> None:
        try:
            results[name] = job()
        except BaseException as err:  # reported below, with the thread's name
            errors.append(err)
            barrier.abort()

    jobs = {
        "segment": lambda: drive(segment(loaded, image, TILING, keep_probabilities=True)),
        "capture": lambda: [query_attention(loaded.model, chw, (20, 30)) for _ in range(3)],
        "dispersion": lambda: [measure(loaded.model, chw, full=True) for _ in range(2)],
    }
    handle = loaded.model.encoder[1].register_forward_pre_hook(meet)
    try:
        threads = [threading.Thread(target=run, args=(name, job), name=name) for name, job in jobs.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        handle.remove()
    assert not errors, errors
    assert arrived == set(jobs)  # all three were inside a forward call at once
    together = results["segment"]
    np.testing.assert_array_equal(together.labels, alone.labels)
    np.testing.assert_array_equal(together.probabilities, alone.probabilities)  # bit-identical
    for maps in results["capture"]:
        for stage, stage_alone in zip(maps, maps_alone, strict=True):
            np.testing.assert_array_equal(stage.scores, stage_alone.scores)
    for stats in results["dispersion"]:
        assert stats == dispersion_alone
