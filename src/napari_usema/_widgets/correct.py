"""The Correct section: one click per error on the labels of the last Segment run, each one undo step.

Conventions (close to napari's own: plain click acts, modifiers change what it does, Ctrl+Z undoes):
- click on background: add an object there, grown over the model's foreground (after a second look of
  the network at a small window around the click, :mod:`napari_usema.inference.local`, on a worker
  thread: clicks made while it runs are refused, not queued);
- Alt-click an object: remove it;
- Ctrl-click two objects: merge them (the first click marks, the second merges);
- Shift-click two or more seeds inside one object, then *Split at seeds*: one object per seed.

The engine does the work (:mod:`napari_usema.postprocess.corrections`); this section turns clicks into
pixel positions, checks them against the last run, and writes each edit through ``Labels.data_setitem``
so that it is one step of napari's undo history. What the edits touched is found at fine-tuning time by
comparing the layer with what Segment wrote, so napari's brush counts as a correction too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, Container, Label, PushButton
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error

from napari_usema._widgets.layer_reading import layer_array
from napari_usema._widgets.layers import checksum
from napari_usema._widgets.segment import SegmentSection
from napari_usema.inference.local import with_second_look
from napari_usema.postprocess.corrections import add_object, check_point, merge_objects, remove_object, split_object

SEEDS = "split seeds"
HELP = (
    "Click background: add an object · Alt-click: remove it · Ctrl-click two objects: merge them · "
    "Shift-click seeds in one object, then Split at seeds · Ctrl+Z undoes each edit."
)


class CorrectSection(Container):
    """Correct mode on the labels of the last Segment run."""

    def __init__(self, segment: SegmentSection) -> None:
        self.segment = segment
        self.viewer = segment.viewer
        self.seeds: list[tuple[int, int]] = []
        self._merge_first: tuple[int, int] | None = None
        self.worker: FunctionWorker | None = None  # the add running now, if any
        self.active = CheckBox(
            text="Correct mode (clicks edit the labels)", value=False, tooltip="clicks on the canvas edit the last run's labels"
        )
        self.help = Label(label="", value=HELP)
        self.split_button = PushButton(text="Split at seeds", tooltip="split the object under the seeds: one part each")
        self.clear_button = PushButton(text="Clear seeds", tooltip="forget the seeds placed so far")
        self.status = Label(label="")
        super().__init__(widgets=[self.active, self.help, self.split_button, self.clear_button, self.status])
        self.help.native.setWordWrap(True)
        self.status.native.setWordWrap(True)
        self.native.layout().addStretch()
        self.active.changed.connect(self._toggle)
        segment.segmented.connect(self._forget_pending)  # seeds and merges belong to the labels they were made on
        self.split_button.changed.connect(self.split)
        self.clear_button.changed.connect(self.clear_seeds)

    # --- clicks ---------------------------------------------------------------------------------
    def _toggle(self, on: bool) -> None:
        callbacks = self.viewer.mouse_drag_callbacks
        if on and self._on_click not in callbacks:
            callbacks.append(self._on_click)
            state = self.segment.state
            if state is not None and state.labels is not None:
                state.labels.mode = "pan_zoom"  # a click must not also paint, fill or erase
        elif not on and self._on_click in callbacks:
            callbacks.remove(self._on_click)
        self._forget_pending()

    def _forget_pending(self, *_: Any) -> None:
        """Drop a half-made merge and the split seeds (a new run, or Correct mode toggled)."""
        self._merge_first = None
        self.clear_seeds()

    def _on_click(self, viewer: Any, event: Any) -> Any:
        """A press and release without dragging is a click; a drag pans, as napari's own."""
        if getattr(event, "type", "mouse_press") != "mouse_press":
            return
        start = np.asarray(event.position, float)
        modifiers = {str(m).lower() for m in getattr(event, "modifiers", ())}
        yield
        while getattr(event, "type", "mouse_release") == "mouse_move":
            if np.abs(np.asarray(event.position, float) - start).max() > 0:
                return  # a drag: leave it to napari
            yield
        state = self.segment.state
        if state is None or state.labels is None:
            show_error("segment an image first: corrections edit the labels of the last Segment run")
            return
        y, x = (int(np.floor(v + 0.5)) for v in state.labels.world_to_data(start)[-2:])
        self.click((y, x), modifiers)

    def click(self, point: tuple[int, int], modifiers: set[str] = frozenset()) -> bool:  # type: ignore[assignment]
        """Apply one click at ``point`` (labels pixels) with keyboard ``modifiers``; False if refused.

        An add returns True once it has started: its edit lands when the worker returns (``self.worker``
        is None again), unless the labels changed in the meantime."""
        try:
            self._check_idle()
            labels, probabilities = self._inputs()
            point = check_point(point, labels.shape)
            if "shift" in modifiers:
                return self._add_seed(labels, point)
            if "control" in modifiers or "meta" in modifiers:
                return self._merge_click(labels, point)
            self._merge_first = None  # any other click ends a half-made merge
            if "alt" in modifiers:
                return self._write(remove_object(labels, point), f"removed object {int(labels[point])}")
            if labels[point]:  # refused before the network runs
                raise ValueError(f"{point} is on object {int(labels[point])}: click on background to add an object")
            return self._start_add(labels, probabilities, point)
        except ValueError as err:
            self._refuse(str(err))
            return False

    def split(self) -> bool:
        """Split the object under the seeds (the confirm step of a split)."""
        try:
            self._check_idle()
            labels, probabilities = self._inputs()
            new = split_object(labels, probabilities, self.seeds)
        except ValueError as err:
            self._refuse(str(err))
            return False
        count = len(self.seeds)
        self.clear_seeds()
        try:
            return self._write(new, f"split one object into {count}")
        except ValueError as err:
            self._refuse(str(err))
            return False

    def clear_seeds(self) -> None:
        self.seeds = []
        if SEEDS in self.viewer.layers:
            self.viewer.layers[SEEDS].data = np.empty((0, 2))

    # --- steps ----------------------------------------------------------------------------------
    def _check_idle(self) -> None:
        """Refuse an edit while an add runs: the add was grown on the labels before it, and is dropped
        when they change under it, so an edit now would cost the user the add."""
        if self.worker is not None:
            raise ValueError("still adding the last object: click again when it is there")

    def _inputs(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The labels to edit and the probabilities they came from, checked to still belong together."""
        state = self.segment.state
        if state is None or state.labels is None or state.labels not in self.viewer.layers:
            raise ValueError("segment an image first: corrections edit the labels of the last Segment run")
        if state.loaded.metadata.task != "instance":
            raise ValueError("corrections edit instance labels; this model makes class maps (paint them instead)")
        labels = np.asarray(state.labels.data)
        if labels.ndim != 2:
            raise ValueError(f"corrections work on one 2-D label image; {state.labels.name} is {labels.shape}")
        probabilities = state.probabilities
        if probabilities is not None and probabilities.shape[-2:] != labels.shape:
            raise ValueError(f"{state.labels.name} is {labels.shape} but the last run's image was {probabilities.shape[-2:]}")
        image = state.image
        stale = state.image_checksum is not None and checksum(layer_array(image)) != state.image_checksum
        if image not in self.viewer.layers or stale:
            raise ValueError(f"{image.name} changed since it was segmented: segment it again before correcting")
        return labels, probabilities

    def _start_add(self, labels: np.ndarray, probabilities: np.ndarray | None, point: tuple[int, int]) -> bool:
        """Grow an object from ``point`` on a worker: the second look is a network run (0.2 s here, more
        on a slower CPU or a larger object size), too long for napari's GUI thread."""
        state = self.segment.state
        labels = labels.copy()  # the worker's own: the brush may change the layer's array meanwhile
        image = self.segment.plane_data(state.image)
        # Read here, on the GUI thread: the worker sees only these (the model is only read).
        loaded, size, channel, device = state.loaded, state.size, state.channel, state.device
        diameter = loaded.metadata.object_diameter

        def grow() -> np.ndarray:
            maps = probabilities
            if maps is not None:  # a second look around the click: faint and small nuclei
                maps = with_second_look(loaded, image, maps, point, size=size, channel=channel, device=device)
            return add_object(labels, maps, point, diameter=diameter)

        # Errors come back once, through errored (not also re-raised in a Qt slot).
        self.worker = create_worker(grow, _ignore_errors=True)
        self.worker.returned.connect(lambda new: self._finish_add(new, labels, state))
        self.worker.errored.connect(self._add_failed)
        self.worker.finished.connect(self._add_finished)
        self.status.value = f"adding an object at {point}…"
        self.worker.start()
        return True

    def _finish_add(self, new: np.ndarray, before: np.ndarray, state: Any) -> None:
        """Write the grown object, if the labels are still those it was grown on."""
        if state is not self.segment.state or state.labels not in self.viewer.layers:
            self._refuse("those labels were replaced or removed meanwhile: the object was not added")
        elif not np.array_equal(np.asarray(state.labels.data), before):
            self._refuse("the labels changed while the object was being added: it was not added; click again")
        else:
            try:
                self._write(new, f"added object {int(new.max())}")
            except ValueError as err:
                self._refuse(str(err))

    def _add_failed(self, err: Exception) -> None:
        self._refuse(str(err) if isinstance(err, ValueError) else f"adding the object failed: {err}")

    def _add_finished(self) -> None:
        self.worker = None
        if self.status.value.startswith("adding an object"):  # cancelled from napari's activity dock
            self.status.value = "the add was cancelled: nothing changed"

    def _refuse(self, message: str) -> None:
        show_error(message)
        self.status.value = message

    def _add_seed(self, labels: np.ndarray, point: tuple[int, int]) -> bool:
        if not labels[point]:
            raise ValueError(f"{point} is background: split seeds go inside the object to split")
        self.seeds.append(point)
        if SEEDS not in self.viewer.layers:
            transform = self.segment.transform_for(self.segment.state.image, "YX")
            self.viewer.add_points(np.empty((0, 2)), name=SEEDS, size=7, face_color="yellow", **transform)
        self.viewer.layers[SEEDS].data = np.array(self.seeds, float)
        self.status.value = f"{len(self.seeds)} seed(s) in object {int(labels[point])}: add more, then Split at seeds"
        return True

    def _merge_click(self, labels: np.ndarray, point: tuple[int, int]) -> bool:
        if self._merge_first is None:
            if not labels[point]:
                raise ValueError(f"{point} is not on an object: Ctrl-click the objects to merge")
            self._merge_first = point
            self.status.value = f"merging object {int(labels[point])}: Ctrl-click the object to merge it with"
            return True
        first, self._merge_first = self._merge_first, None
        return self._write(merge_objects(labels, [first, point]), f"merged object {int(labels[point])} into {int(labels[first])}")

    def _write(self, new: np.ndarray, what: str) -> bool:
        """Write the edit as one step of the layer's undo history."""
        layer = self.segment.state.labels
        old = np.asarray(layer.data)
        if new.max(initial=0) > np.iinfo(old.dtype).max:
            raise ValueError(f"{layer.name} holds {old.dtype} ids and is full: no new id fits")
        changed = np.nonzero(new != old)
        if not len(changed[0]):
            raise ValueError("that click changed nothing")
        layer.data_setitem(changed, new[changed].astype(old.dtype))
        self.status.value = f"{what} (Ctrl+Z undoes it)"
        return True
