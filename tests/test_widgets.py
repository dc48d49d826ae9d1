"""The napari dock widget, driven as a user would: segment, cancel, tune, correct and fine-tune."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("napari")

from napari_usema._sample_data import load_nuclei
from napari_usema.inference.pipeline import drive, segment
from napari_usema.io.checkpoint import load_checkpoint

pytestmark = pytest.mark.gui


def wait_for_worker(qtbot, section) -> None:
    qtbot.waitUntil(lambda: section.worker is None, timeout=120_000)


def test_segment_sample_adds_the_engines_labels(dock, qtbot, intensity_model) -> None:
    viewer, widget = dock
    widget.segment.use_model(intensity_model)
    widget.segment.tile.value = 128
    assert widget.segment.run() is not None
    qtbot.waitUntil(lambda: "nuclei labels" in viewer.layers, timeout=120_000)
    wait_for_worker(qtbot, widget.segment)
    labels = viewer.layers["nuclei labels"].data
    expected = drive(segment(intensity_model, load_nuclei(), widget.segment.tiling(), widget.segment.watershed)).labels
    np.testing.assert_array_equal(labels, expected)
    assert labels.max() > 50  # the sample has 146 nuclei; a threshold finds most of them
    assert "objects" in widget.segment.status.value
    # Re-running updates the same layer instead of piling up new ones.
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    assert [layer.name for layer in viewer.layers] == ["nuclei", "nuclei labels"]
    # Multi-scale TTA reaches the engine as its scales.
    widget.segment.multiscale.value = "0.8x, 1x, 1.25x (~3x slower)"
    assert widget.segment.tiling().scales == (0.8, 1.0, 1.25)
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    expected = drive(segment(intensity_model, load_nuclei(), widget.segment.tiling(), widget.segment.watershed)).labels
    np.testing.assert_array_equal(viewer.layers["nuclei labels"].data, expected)


def test_cancel_mid_run_leaves_no_layer(dock, qtbot, tiny_instance_checkpoint: Path) -> None:
    viewer, widget = dock
    viewer.layers["nuclei"].data = np.tile(load_nuclei(), (4, 4))  # many tiles, so there is time to cancel
    widget.segment.use_checkpoint(tiny_instance_checkpoint)
    widget.segment.tile.value, widget.segment.batch.value = 64, 1
    seen = []
    worker = widget.segment.run()
    worker.yielded.connect(lambda p: (seen.append(p), widget.segment.cancel()))
    wait_for_worker(qtbot, widget.segment)
    assert 1 <= len(seen) < seen[0].total
    assert [layer.name for layer in viewer.layers] == ["nuclei"]
    assert "Cancelled" in widget.segment.status.value


def test_slider_change_updates_labels_without_the_network(dock, qtbot, intensity_model) -> None:
    viewer, widget = dock
    widget.segment.use_model(intensity_model)
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    layer = viewer.layers["nuclei labels"]
    before = layer.data.copy()
    calls = []
    intensity_model.model.register_forward_hook(lambda *a: calls.append(1))
    widget.postprocess.min_size.value = 400  # drops every small nucleus
    qtbot.waitUntil(lambda: not np.array_equal(layer.data, before), timeout=10_000)
    assert layer.data.max() < before.max()
    assert calls == []
    assert "re-computed in" in widget.postprocess.status.value


def test_a_models_tuned_postprocess_sets_the_sliders(dock, intensity_model) -> None:
    import dataclasses

    _, widget = dock
    tuned = dataclasses.replace(intensity_model.metadata, postprocess={"interior_threshold": 0.9, "foreground_threshold": 0.6})
    widget.segment.use_model(dataclasses.replace(intensity_model, metadata=tuned))
    assert (widget.postprocess.interior.value, widget.postprocess.foreground.value) == (0.9, 0.6)
    assert widget.segment.watershed == tuned.watershed()
    widget.segment.use_model(intensity_model)  # back to a model without tuned values: the defaults
    assert widget.postprocess.interior.value == 0.5
    # Multi-scale TTA starts from the model's own factors too, named or not.
    for factors, label in (((0.8, 1.0, 1.25), "0.8x, 1x, 1.25x (~3x slower)"), ((0.5, 1.0), "0.5x, 1x")):
        model = dataclasses.replace(intensity_model, metadata=dataclasses.replace(intensity_model.metadata, test_scales=factors))
        widget.segment.use_model(model)
        assert widget.segment.multiscale.value == label and widget.segment.tiling().scales == factors
    widget.segment.use_model(intensity_model)
    assert widget.segment.multiscale.value == "off" and widget.segment.tiling().scales == (1.0,)


def test_painted_corrections_are_never_overwritten(dock, qtbot, intensity_model) -> None:
    viewer, widget = dock
    widget.segment.use_model(intensity_model)
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    layer = viewer.layers["nuclei labels"]
    layer.data[0:5, 0:5] = 999  # a user's paint stroke
    layer.refresh()
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    assert layer.data[0, 0] == 999
    assert "nuclei labels [2]" in viewer.layers


def test_finetune_from_corrected_layer_saves_a_new_checkpoint(
    dock, qtbot, tiny_instance_checkpoint: Path, tmp_path: Path
) -> None:
    viewer, widget = dock
    before = tiny_instance_checkpoint.read_bytes()
    widget.segment.use_checkpoint(tiny_instance_checkpoint)
    truth = np.zeros(load_nuclei().shape, np.uint16)
    truth[20:40, 20:40], truth[100:120, 60:90] = 1, 2
    viewer.add_labels(truth, name="corrected")
    widget.reset_choices()
    widget.finetune.labels_layer.value = viewer.layers["corrected"]
    widget.finetune.steps.value = 3
    assert widget.finetune.add_pair()
    worker = widget.finetune.run()
    assert worker is not None
    wait_for_worker(qtbot, widget.finetune)
    saved = widget.finetune.saved
    assert saved is not None and saved.exists() and saved.parent == tmp_path / "models"
    assert saved.name == "tiny_instance.ft1.safetensors"
    assert tiny_instance_checkpoint.read_bytes() == before
    child = load_checkpoint(saved)
    assert child.metadata.provenance["parent"] == str(tiny_instance_checkpoint)
    assert widget.segment.loaded.path == saved  # the Segment section switched to the new model
    assert len(widget.finetune.plot.losses) == 3
    assert not torch.equal(
        child.model.state_dict()["decoder.0.head.weight"],
        load_checkpoint(tiny_instance_checkpoint).model.state_dict()["decoder.0.head.weight"],
    )


def test_bad_input_shows_a_notification_and_changes_nothing(
    dock, qtbot, tiny_instance_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    import napari_usema._widgets.finetune as ft
    import napari_usema._widgets.segment as seg

    viewer, widget = dock
    errors: list[str] = []
    monkeypatch.setattr(seg, "show_error", errors.append)
    monkeypatch.setattr(ft, "show_error", errors.append)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 5)
    widget.segment.use_checkpoint(corrupt)
    assert "truncated" in errors[-1]
    widget.segment.use_checkpoint(tiny_instance_checkpoint)
    viewer.add_image(np.zeros((2, 50, 60, 5), np.uint8), name="5 channels")
    widget.reset_choices()
    widget.segment.image.value = viewer.layers["5 channels"]
    assert widget.segment.run() is None and "pick the one to segment" in errors[-1]
    viewer.add_labels(np.zeros((260, 347), np.uint16), name="empty")
    widget.reset_choices()
    widget.segment.image.value = viewer.layers["nuclei"]
    widget.finetune.labels_layer.value = viewer.layers["empty"]
    assert widget.finetune.run() is None and "is empty" in errors[-1]
    viewer.layers.clear()
    widget.reset_choices()
    assert widget.segment.run() is None and "no image layer" in errors[-1]


def test_attention_maps_of_a_half_resolution_model_cover_its_larger_windows(
    dock, qtbot, tiny_instance_checkpoint: Path, tmp_path: Path
) -> None:
    import dataclasses
    from types import SimpleNamespace

    from napari_usema.io.checkpoint import load_checkpoint, save_checkpoint

    viewer, widget = dock
    tiny = load_checkpoint(tiny_instance_checkpoint)
    half = save_checkpoint(tmp_path / "half.safetensors", tiny.model, dataclasses.replace(tiny.metadata, input_scale=0.5))
    explorer = widget.attention

    def first_window_side(checkpoint: Path) -> int:
        """Stage 0's map of the clicked pixel: nonzero inside its attention window only."""
        widget.segment.use_checkpoint(checkpoint)
        explorer._on_click(viewer, SimpleNamespace(position=(120.0, 200.0)))
        wait_for_worker(qtbot, explorer)
        maps = viewer.layers["attention maps"]
        assert maps.data.shape[1:] == (260, 347)  # at the image's own size, whatever the model's scale
        window = maps.data[0] > 0
        assert window[120, 200]
        return int(np.flatnonzero(window.any(axis=0)).size)

    qtbot.waitUntil(lambda: explorer.worker is None, timeout=5_000)
    full, halved = first_window_side(tiny_instance_checkpoint), first_window_side(half)
    assert 2 * full <= halved <= 2 * full + 2  # the same window, twice as large (bilinear: +1 pixel a side)


def test_attention_explorer_reacts_to_a_click(dock, qtbot, tiny_instance_checkpoint: Path, tmp_path: Path) -> None:
    from types import SimpleNamespace

    viewer, widget = dock
    widget.segment.use_checkpoint(tiny_instance_checkpoint)
    explorer = widget.attention
    explorer.pick.value = True
    assert explorer._on_click in viewer.mouse_drag_callbacks
    explorer._on_click(viewer, SimpleNamespace(position=(120.0, 200.0)))
    qtbot.waitUntil(lambda: "attention maps" in viewer.layers, timeout=60_000)
    wait_for_worker(qtbot, explorer)
    maps = viewer.layers["attention maps"]
    assert maps.data.shape[1:] == (260, 347) and maps.data.shape[0] == len(maps.metadata["planes"])
    assert maps.data[0].max() == pytest.approx(1.0)  # each plane is shown scaled to its maximum
    assert maps.data[0, 120, 200] > 0 and maps.data[0, 0, 0] == 0  # inside vs outside the clicked pixel's window
    assert viewer.layers["attention queries"].data.tolist() == [[120, 200]]
    assert "stage 0" in explorer.mean_info.value
    explorer.budget.value = 5
    explorer.run_dispersion()
    wait_for_worker(qtbot, explorer)
    assert explorer.steps and explorer.steps[0].crop == 16
    assert "entropy/log N" in explorer.status.value
    explorer.folder.value = tmp_path / "export"
    paths = explorer.export()
    assert (tmp_path / "export" / "dispersion.json").exists() and any(p.name == "attention_120_200.tif" for p in paths)


def test_status_line_names_objects_or_class_shares() -> None:
    from napari_usema._widgets.segment_choices import summary as _summary
    from napari_usema.inference.pipeline import SegmentationResult

    classes = np.zeros((10, 20), np.uint8)
    classes[:5, :4] = 1  # 10% of the image
    assert _summary(SegmentationResult(classes, None, "semantic", ("background", "polyp"))) == "polyp 10.0%"
    instances = np.zeros((10, 20), np.uint16)
    instances[0, :3] = [1, 2, 3]
    assert _summary(SegmentationResult(instances, None, "instance", ("background", "interior", "boundary"))) == "3 objects"


def test_one_long_job_at_a_time_and_any_cancel_stops_it(dock, qtbot, tiny_instance_checkpoint: Path, monkeypatch) -> None:
    import napari_usema._widgets.jobs as jobs

    viewer, widget = dock
    notices: list[str] = []
    monkeypatch.setattr(jobs, "show_info", notices.append)
    viewer.layers["nuclei"].data = np.tile(load_nuclei(), (4, 4))  # many tiles: a long run
    widget.segment.use_checkpoint(tiny_instance_checkpoint)
    widget.segment.tile.value, widget.segment.batch.value = 64, 1
    seen = []
    worker = widget.segment.run()
    worker.yielded.connect(seen.append)
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=60_000)
    starts = (
        widget.segment.run_button,
        widget.finetune.run_button,
        widget.finetune.resegment_button,
        widget.attention.dispersion_button,
    )
    assert not any(button.enabled for button in starts)
    assert widget.finetune.cancel_button.enabled and widget.attention.cancel_button.enabled
    # Every other way to start a job on the model is refused while it runs, with a notice.
    assert widget.segment.run() is None
    assert widget.attention.query((100, 100)) is None
    assert widget.attention.run_dispersion() is None
    assert widget.finetune.run() is None
    assert len(notices) == 4 and all("Segmentation is running" in n for n in notices)
    widget.attention.cancel_button.changed.emit(True)  # Cancel on another tab reaches the segmentation
    wait_for_worker(qtbot, widget.segment)
    assert len(seen) < seen[0].total and "Cancelled" in widget.segment.status.value
    assert widget.segment.run_button.enabled and widget.attention.dispersion_button.enabled
    assert not widget.finetune.resegment_button.enabled  # nothing fine-tuned yet to re-segment with
    assert not widget.segment.cancel_button.enabled


def test_retuning_runs_off_the_gui_thread_and_the_latest_value_wins(dock, qtbot, intensity_model, monkeypatch) -> None:
    import threading

    import napari_usema._widgets.postprocess as post
    from napari_usema.postprocess.watershed import instances_from_probabilities

    viewer, widget = dock
    widget.segment.use_model(intensity_model)
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    threads = []

    def recording(probs, config):
        threads.append(threading.current_thread() is threading.main_thread())
        return instances_from_probabilities(probs, config)

    monkeypatch.setattr(post, "instances_from_probabilities", recording)
    section = widget.postprocess
    for size in (50, 120, 250, 400):  # a drag: each value arrives while the previous one may still run
        section.min_size.value = size
        section.apply()
    qtbot.waitUntil(lambda: section.worker is None and not section._timer.isActive(), timeout=20_000)
    qtbot.waitUntil(lambda: section.worker is None, timeout=20_000)
    expected = instances_from_probabilities(widget.segment.state.probabilities, section.config())
    np.testing.assert_array_equal(viewer.layers["nuclei labels"].data, expected)
    assert section.config().min_size == 400
    assert threads and not any(threads)  # never on the GUI thread
    assert "re-computed in" in section.status.value


def test_estimate_diameter_fills_the_box_and_segment_resizes_by_it(dock, qtbot, intensity_model) -> None:
    import dataclasses

    viewer, widget = dock
    yy, xx = np.mgrid[:160, :160]
    image = np.zeros((160, 160), np.float32)
    for cy in range(20, 160, 40):
        for cx in range(20, 160, 40):
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = 1  # disks of diameter ~10
    viewer.add_image(image, name="small cells")
    widget.reset_choices()
    widget.segment.image.value = viewer.layers["small cells"]
    widget.segment.use_model(intensity_model)
    assert not widget.segment.estimate_button.enabled  # this model records no diameter
    sized = dataclasses.replace(intensity_model, metadata=dataclasses.replace(intensity_model.metadata, object_diameter=20.0))
    widget.segment.use_model(sized)
    assert widget.segment.estimate_button.enabled and "objects ~20 px" in widget.segment.info.value
    assert widget.segment.estimate() is not None
    wait_for_worker(qtbot, widget.segment)
    assert 9 <= widget.segment.diameter.value <= 12 and "Objects measure about" in widget.segment.status.value
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    assert viewer.layers["small cells labels"].data.max() == 16
    widget.segment.diameter.value = 1.0  # would enlarge 20x: refused before any work
    assert widget.segment.run() is None


@pytest.fixture
def dapi_marker_file(shared_data: Path, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A DAPI + marker OME-TIFF made from a real nuclei image, and the DAPI plane."""
    import tifffile

    from napari_usema.io.images import find_pairs, read_image

    dapi = read_image(find_pairs(shared_data / "microscopy")["dsb2018s1test_4be73d68f4338691"][0])
    path = tmp_path / "cells.ome.tif"
    metadata = {"axes": "CYX", "Channel": {"Name": ["DAPI", "marker"]}, "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325}
    tifffile.imwrite(path, np.stack([dapi, 255 - dapi]), ome=True, metadata=metadata)
    return path, dapi


def test_an_ome_tiff_opens_split_by_channel_and_its_dapi_layer_segments(dock, qtbot, dapi_marker_file) -> None:
    viewer, widget = dock
    path, dapi = dapi_marker_file
    viewer.open(str(path), plugin="napari-usema")
    assert {"DAPI", "marker"} <= {layer.name for layer in viewer.layers}  # napari's channel_axis, named by the file
    assert tuple(viewer.layers["DAPI"].scale) == (0.325, 0.325) and viewer.layers["DAPI"].metadata["axes"] == "YX"
    widget.reset_choices()
    widget.segment.image.value = viewer.layers["DAPI"]
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    labels = viewer.layers["DAPI labels"]
    expected = drive(segment(widget.segment.loaded, dapi, widget.segment.tiling(), widget.segment.watershed)).labels
    np.testing.assert_array_equal(labels.data, expected)
    assert labels.data.max() >= 30 and tuple(labels.scale) == (0.325, 0.325)


def test_a_multichannel_layer_lists_its_channels_by_name_and_segments_the_chosen_one(dock, qtbot, dapi_marker_file) -> None:
    viewer, widget = dock
    path, dapi = dapi_marker_file
    import tifffile

    both = tifffile.imread(path)
    viewer.add_image(both, name="both", scale=(1, 0.5, 0.5), metadata={"axes": "CYX", "channel_names": ["DAPI", "marker"]})
    widget.reset_choices()
    widget.segment.image.value = viewer.layers["both"]
    assert widget.segment.axes.value == "CYX"
    box = widget.segment.channel
    assert box.choices == ("auto", 0, 1)
    assert [box.native.itemText(i) for i in range(box.native.count())] == ["auto", "0: DAPI", "1: marker"]
    assert widget.segment.run() is None  # two fluorescence channels: one must be picked
    widget.segment.channel.value = 0
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    labels = viewer.layers["both labels"]
    assert labels.data.shape == dapi.shape and tuple(labels.scale) == (0.5, 0.5)
    expected = drive(segment(widget.segment.loaded, dapi, widget.segment.tiling(), widget.segment.watershed)).labels
    np.testing.assert_array_equal(labels.data, expected)
    # Read as planes instead (the Axes box), the same layer gives a stack of labels.
    widget.segment.axes.value = "ZYX"
    assert widget.segment.channel.choices == ("auto",)


def test_tracking_in_napari_keeps_ids_across_frames_and_survives_retuning(dock, qtbot, shared_data: Path) -> None:
    from napari_usema.io.images import find_pairs, read_image

    viewer, widget = dock
    image = read_image(find_pairs(shared_data / "microscopy")["dsb2018s1test_4be73d68f4338691"][0])
    movie = np.stack([image[3 * t : 3 * t + 200, 2 * t : 2 * t + 200] for t in range(3)])
    viewer.add_image(movie, name="movie", metadata={"axes": "TYX"})
    widget.reset_choices()
    widget.segment.image.value = viewer.layers["movie"]
    widget.segment.stacks.value = "track objects over time (T)"
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    labels = viewer.layers["movie labels"]

    def agreement() -> float:
        here, there = labels.data[0][3:, 2:], labels.data[1][:197, :198]
        both = (here > 0) & (there > 0)
        return float((here[both] == there[both]).mean())

    assert labels.data.shape == (3, 200, 200) and agreement() > 0.97
    widget.postprocess.interior.value = 0.8  # re-tuned from the cache: still tracked
    qtbot.waitUntil(lambda: "re-computed" in widget.postprocess.status.value, timeout=60_000)
    from napari_usema.postprocess.linking import track
    from napari_usema.postprocess.watershed import instances_from_probabilities

    config = widget.postprocess.config()
    frames = np.stack([instances_from_probabilities(p, config) for p in widget.segment.state.probabilities])
    np.testing.assert_array_equal(labels.data, track(frames, 0.25))
    widget.segment.stacks.value = "stitch Z planes into 3-D objects"
    assert widget.segment.run() is None  # a TYX layer has no Z


def test_labels_line_up_with_a_layer_whose_channels_sit_between_its_planes(dock, qtbot, intensity_model) -> None:
    viewer, widget = dock
    stack = np.zeros((3, 2, 64, 64), np.float32)  # Z, C, Y, X: napari lines layers up by their last axes
    stack[:, 0, 10:30, 10:30] = 1
    viewer.add_image(stack, name="zc", scale=(2.0, 1.0, 0.5, 0.5))
    widget.reset_choices()
    widget.segment.image.value = viewer.layers["zc"]
    widget.segment.use_model(intensity_model)
    widget.segment.axes.value = "ZCYX"
    widget.segment.channel.value = 0
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    labels = viewer.layers["zc labels"]
    assert labels.data.shape == (3, 1, 64, 64) and labels.metadata["axes"] == "ZCYX"  # C of size 1: aligned
    assert tuple(labels.scale) == (2.0, 1.0, 0.5, 0.5) and labels.data[:, 0, 20, 20].all()
    image = viewer.layers["zc"]
    assert labels.ndim == image.ndim and np.allclose(labels.extent.world[:, [0, 2, 3]], image.extent.world[:, [0, 2, 3]])


def test_correct_mode_one_click_per_edit_each_one_undo_step(dock, qtbot, shared_data: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from scipy import ndimage as ndi

    import napari_usema._widgets.correct as correct_module
    from napari_usema.io.images import find_pairs, read_image

    viewer, widget = dock
    errors: list[str] = []
    monkeypatch.setattr(correct_module, "show_error", errors.append)
    image = read_image(find_pairs(shared_data / "microscopy")["dsb2018s1test_4be73d68f4338691"][0])
    viewer.add_image(image, name="cells", scale=(0.5, 0.5))
    widget.reset_choices()
    widget.segment.image.value = viewer.layers["cells"]
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    layer = viewer.layers["cells labels"]
    segmented = layer.data.copy()
    widget.correct.active.value = True
    assert widget.correct._on_click in viewer.mouse_drag_callbacks

    def click(y: int, x: int, *modifiers: str, drag_to: tuple[int, int] | None = None) -> None:
        """A press and release at image pixel (y, x) (optionally dragged), through the viewer's own
        callbacks, driven as napari drives them: a generator is advanced on each move and the release."""
        import inspect

        event = SimpleNamespace(type="mouse_press", position=(y * 0.5, x * 0.5), modifiers=modifiers)
        ours = [cb for cb in viewer.mouse_drag_callbacks if cb == widget.correct._on_click]  # napari's own need a canvas
        running = [cb(viewer, event) for cb in ours]
        running = [g for g in running if inspect.isgenerator(g)]
        for g in running:
            next(g, None)
        if drag_to is not None:
            event.type, event.position = "mouse_move", (drag_to[0] * 0.5, drag_to[1] * 0.5)
            for g in running:
                next(g, None)
        event.type = "mouse_release"
        for g in running:
            next(g, None)

    def deepest(mask: np.ndarray) -> tuple[int, int]:
        return tuple(int(v) for v in np.unravel_index(np.argmax(ndi.distance_transform_edt(mask)), mask.shape))

    target = 5
    point = deepest(segmented == target)
    assert layer.mode == "pan_zoom"  # Correct mode: a click does not also paint
    click(*point, "Alt", drag_to=(point[0] + 20, point[1]))  # a drag pans: no edit
    np.testing.assert_array_equal(layer.data, segmented)
    click(*point, "Alt")  # remove
    assert not (layer.data == target).any()
    layer.undo()  # Ctrl+Z: one step back to what Segment wrote
    np.testing.assert_array_equal(layer.data, segmented)
    click(*point, "Alt")
    removed = layer.data.copy()
    # The add's second look runs on a worker: held here until released, to click while it runs.
    import threading

    release = threading.Event()
    real_second_look = correct_module.with_second_look

    def held_second_look(*args, **kwargs):
        assert threading.current_thread() is not threading.main_thread()  # not napari's GUI thread
        release.wait(60)
        return real_second_look(*args, **kwargs)

    monkeypatch.setattr(correct_module, "with_second_look", held_second_look)
    click(*point)  # add it back from one click
    assert widget.correct.worker is not None
    other = deepest(segmented == int(segmented.max()))  # an object that is there (not the one being added)
    errors.clear()
    click(*other, "Alt")  # a remove, refused while the add runs
    assert errors and "still adding" in errors[-1]
    errors.clear()
    click(*deepest(segmented == 0))  # another add, refused too
    assert errors and "still adding" in errors[-1]
    widget.correct.seeds = [other, other]
    assert not widget.correct.split() and "still adding" in errors[-1]
    widget.correct.seeds = []
    np.testing.assert_array_equal(layer.data, removed)  # nothing changed
    release.set()
    wait_for_worker(qtbot, widget.correct)
    new_id = int(segmented.max()) + 1
    grown = layer.data == new_id
    assert (grown & (segmented == target)).sum() / (grown | (segmented == target)).sum() >= 0.7
    after_add = layer.data.copy()
    layer.undo()  # the add is one step too
    np.testing.assert_array_equal(layer.data, removed)
    layer.redo()
    np.testing.assert_array_equal(layer.data, after_add)
    # Labels changed while an add ran (the brush): the add is dropped, not written over them.
    release.clear()
    click(*deepest(segmented == 0))
    layer.data_setitem((np.array([0]), np.array([0])), np.array([layer.data[0, 0] + 1], layer.data.dtype))  # a brush stroke
    release.set()
    wait_for_worker(qtbot, widget.correct)
    assert "labels changed while" in errors[-1] and not (layer.data == new_id + 1).any()
    layer.undo()
    np.testing.assert_array_equal(layer.data, after_add)
    # Merge two neighbours with two Ctrl-clicks, then split them again with two seeds.
    grown_labels = ndi.grey_dilation(segmented, size=5)
    a, b = sorted(
        {
            (int(p), int(q))
            for p, q in zip(segmented.ravel(), grown_labels.ravel(), strict=True)
            if p and q and p != q and target not in (p, q)
        }
    )[0]
    click(*deepest(segmented == a), "Control")
    click(*deepest(segmented == b), "Control")
    assert not (layer.data == b).any()
    click(*deepest(segmented == a), "Shift")
    click(*deepest(segmented == b), "Shift")
    assert widget.correct.split()
    assert len(np.unique(layer.data[(segmented == a) | (segmented == b)])) == 2
    for _ in range(2):
        layer.undo()  # the split, then the merge: each click was one step
    np.testing.assert_array_equal(layer.data, after_add)
    # Bad clicks change nothing and say why.
    before = layer.data.copy()
    click(300, 300)
    assert "outside" in errors[-1]
    click(*deepest(segmented == 0), "Shift")
    assert "background" in errors[-1]
    viewer.layers["cells"].data = image[::-1].copy()  # the image changed since Segment
    click(10, 10)
    assert "changed since it was segmented" in errors[-1]
    np.testing.assert_array_equal(layer.data, before)
    # The Fine-tune tab trains on the corrections by default, only around them.
    viewer.layers["cells"].data = image
    widget.finetune.reset_choices()
    assert "Train on my corrections" in widget.finetune.pairs_info.value
    pairs, objects = widget.finetune.corrections()
    assert len(pairs) == 1 and objects >= 2 and pairs[0].region[segmented == target].all()
    assert pairs[0].region.mean() < 0.5  # the unedited rest of the image is left out


def test_the_activity_bar_really_moves(dock, qtbot, intensity_model, monkeypatch) -> None:
    _, widget = dock
    widget.segment.use_model(intensity_model)
    widget.segment.tile.value, widget.segment.batch.value = 128, 1  # several batches
    values: list[int] = []
    bars: list = []
    import napari_usema._widgets.jobs as jobs

    class Watched(jobs.progress):  # napari's own bar, recording the values it shows
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            bars.append(self)
            self.events.value.connect(lambda event: values.append(event.value))

    monkeypatch.setattr(jobs, "progress", Watched)
    row = widget.segment.job_bar  # the bar beside Cancel, with the time left
    shown: list[tuple[int, str]] = []
    row.bar.changed.connect(lambda value: shown.append((value, row.left.value)))
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    assert len(bars) == 1  # one bar per run (re-entrant Qt events once made a dozen, all at 0%)
    total = bars[0].total
    assert values and values == sorted(values) and values[-1] == total > 0  # napari moved the bar, to the end
    steps = [value for value, _ in shown if value]
    assert steps == sorted(steps) and steps[-1] == total  # the widget's bar moved too, to the end
    assert any(text.startswith(f"{total}/{total}") for _, text in shown)
    assert not row.bar.visible and row.left.value == ""  # and went when the job ended


def test_the_bar_beside_cancel_counts_up_with_the_time_left(qtbot, monkeypatch) -> None:
    import napari_usema._widgets.jobs as jobs

    clock = iter([100.0, 102.0, 104.0, 106.0])
    monkeypatch.setattr(jobs.time, "perf_counter", lambda: next(clock))
    row = jobs.JobBar()
    progress = jobs.JobProgress("test", row)
    seen = []
    for done in (1, 2, 3):
        progress.set(done, 10)
        seen.append((row.bar.value, row.bar.max, row.left.value, not row.bar.native.isHidden()))
    assert seen[0] == (1, 10, "1/10", True)  # no rate yet after one update
    assert seen[1] == (2, 10, "2/10 · 16 s left", True)  # 2 s per step, 8 steps left
    assert seen[2] == (3, 10, "3/10 · 14 s left", True)
    progress.close()
    assert row.bar.native.isHidden() and row.left.value == ""
    assert jobs.time_left(0.4) == "<1 s left" and jobs.time_left(185) == "3 min 5 s left"


def test_a_job_that_ends_during_an_update_leaves_no_bar_behind(qtbot, monkeypatch) -> None:
    """napari's bar processes Qt events while it moves, which can deliver the job's end mid-update: the
    bar beside Cancel must still go (it once stayed at 100% after every run)."""
    import napari_usema._widgets.jobs as jobs

    row = jobs.JobBar()
    job = jobs.JobProgress("test", row)

    class EndsTheJob:  # stands in for napari's bar: moving it runs the finished handler
        def __init__(self, total: int, desc: str) -> None:
            self.n, self.total = 0, total

        def update(self, step: int) -> None:
            self.n += step
            job.close()

        def close(self) -> None:
            pass

    monkeypatch.setattr(jobs, "progress", EndsTheJob)
    job.set(3, 3)
    assert row.bar.native.isHidden() and row.left.value == "" and job._bar is None


def test_a_rerun_says_what_it_changed_and_marks_it(dock, qtbot, intensity_model) -> None:
    from napari_usema.io.checkpoint import LoadedModel
    from napari_usema.io.metadata import NormalizationRecipe
    from napari_usema.postprocess.compare import compare_labels

    viewer, widget = dock
    widget.segment.use_model(intensity_model)
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    first = np.array(viewer.layers["nuclei labels"].data)
    # "Fine-tuned": the same stand-in network with a darker threshold, so nuclei grow and some merge.
    meta = dataclasses.replace(intensity_model.metadata, normalization=NormalizationRecipe("percentile", 1, 60))
    widget.segment.use_model(LoadedModel(intensity_model.model, meta))
    widget.segment.mark_changes.value = True
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    second = np.asarray(viewer.layers["nuclei labels"].data)
    expected, expected_marks = compare_labels(first, second)
    assert expected.added and expected.removed  # the two runs really differ
    assert f"since the last run: {expected.summary()}" in widget.segment.status.value
    marks = viewer.layers["nuclei labels changes"]
    np.testing.assert_array_equal(marks.data, expected_marks)
    assert 1 in marks.data and set(np.unique(marks.data)) <= {0, 1, 2}  # added green (removed magenta, if uncovered)


def test_dispersion_takes_the_square_in_view(dock, qtbot) -> None:
    viewer, widget = dock
    layer = viewer.layers["nuclei"]
    h, w = layer.data.shape[:2]
    viewer.reset_view()
    qtbot.wait(200)
    full = widget.attention._view_box(layer)
    assert full[1] - full[0] == min(h, w)  # all in view: the largest square
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center, camera.zoom = (0, 100, 150), camera.zoom * 4
    qtbot.wait(200)
    y0, y1, x0, x1 = widget.attention._view_box(layer)
    assert y1 - y0 < min(h, w) / 2 and y0 <= 100 <= y1 and x0 <= 150 <= x1  # zoomed in: what is in view


def test_opening_the_dock_frames_the_image_again(make_napari_viewer, qtbot, tmp_path: Path) -> None:
    from napari_usema._widgets.main import UsemaWidget

    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(load_nuclei(), name="nuclei")
    qtbot.wait(50)
    viewer.window.add_dock_widget(UsemaWidget(viewer, output_folder=tmp_path), name="USEMA")  # narrows the canvas
    h, w = layer.data.shape

    def whole_image_in_view() -> bool:
        (top, left), (bottom, right) = (c[-2:] for c in layer.corner_pixels)
        return top <= 0 and left <= 0 and bottom >= h - 1 and right >= w - 1

    qtbot.wait(1000)  # the dock lays out and the canvas narrows; checking earlier would see the old view
    assert whole_image_in_view()  # without framing again: columns 106..240 of 347


def test_class_maps_get_colours_that_stand_out_and_labels_an_outline(dock, qtbot, tiny_semantic_checkpoint: Path) -> None:
    from napari_usema._sample_data import load_colonoscopy

    viewer, widget = dock
    viewer.add_image(load_colonoscopy(), name="colonoscopy", rgb=True)
    widget.reset_choices()
    widget.segment.image.value = viewer.layers["colonoscopy"]
    widget.segment.use_checkpoint(tiny_semantic_checkpoint)
    widget.segment.run()
    wait_for_worker(qtbot, widget.segment)
    labels = viewer.layers["colonoscopy classes"]
    yellow = np.array([1.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(labels.colormap.map(np.array([1]))[0], yellow)  # not napari's dark red
    assert labels.colormap.map(np.array([0]))[0][3] == 0  # background transparent
    assert labels.contour == 0
    widget.segment.style.value = "outline"
    assert labels.contour > 0 and labels.opacity == 1.0


def test_each_sample_opens_with_its_model_and_an_unlike_image_is_flagged(make_napari_viewer, qtbot, own_config_folder) -> None:
    from napari_usema._widgets.main import UsemaWidget
    from napari_usema._widgets.model_choice import ModelMemory

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-usema", "colonoscopy")
    widget = UsemaWidget(viewer, output_folder=own_config_folder / "models")
    viewer.window.add_dock_widget(widget, name="USEMA")
    widget.reset_choices()
    segment = widget.segment
    assert segment.image.value.name == "colonoscopy" and segment.model.value == "polyps"  # not the nuclei model
    assert segment.fit.native.isHidden()  # the polyps model has seen frames like this one
    segment.model.value = "nuclei"  # the user insists: the tab says why results may be poor
    assert not segment.fit.native.isHidden() and "colour, dark background" in segment.fit.value and "nuclei" in segment.fit.value
    # A grey image the widget knows nothing about keeps the current model; once the user runs a model
    # on a grey image, the next grey image gets it again (and so does the next session: it is on disk).
    grey = viewer.add_image(np.asarray(load_nuclei()), name="mine")
    segment.image.value = grey
    assert segment.model.value == "nuclei" and segment.fit.native.isHidden()
    ModelMemory().remember("grey", "polyps")
    other = viewer.add_image(np.asarray(load_nuclei())[:128, :128], name="another")
    segment.image.value = other
    assert segment.model.value == "polyps"
    assert not segment.fit.native.isHidden() and "grey, dark background" in segment.fit.value
    assert (own_config_folder / "models.json").is_file()
