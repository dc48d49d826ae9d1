"""What a re-run changed: objects added, removed and kept, matched by overlap."""

from __future__ import annotations

import numpy as np
import pytest

from napari_usema.postprocess.compare import ADDED, REMOVED, change_mask, compare_labels


def boxes(*spans: tuple[int, int, int, int]) -> np.ndarray:
    """A 40x40 label image with object k+1 on rows y0:y1, columns x0:x1 of ``spans[k]``."""
    labels = np.zeros((40, 40), np.uint16)
    for k, (y0, y1, x0, x1) in enumerate(spans, start=1):
        labels[y0:y1, x0:x1] = k
    return labels


def test_a_redrawn_object_is_kept_and_new_ids_do_not_matter() -> None:
    before = boxes((2, 10, 2, 10), (20, 30, 20, 30))
    after = np.zeros_like(before)
    after[3:11, 2:10] = 7  # the first one, a row lower (IoU 0.78), under another id
    after[20:30, 20:30] = 3
    changes = compare_labels(before, after)
    assert changes.added == () and changes.removed == () and changes.kept == 2
    assert changes.summary() == "no object changed (2 kept)"


def test_a_split_is_one_removed_and_its_parts_added_and_the_mask_marks_them() -> None:
    before = boxes((2, 10, 2, 20), (30, 38, 30, 38))  # a merge, and one that the new run misses
    after = boxes((2, 10, 2, 8), (2, 10, 8, 14), (2, 10, 14, 20), (15, 22, 15, 22))  # split in three, and a new one
    changes = compare_labels(before, after)
    assert changes.removed == (1, 2) and changes.added == (1, 2, 3, 4) and changes.kept == 0
    assert changes.summary() == "4 added, 2 removed, 0 kept"
    mask = change_mask(before, after, changes)
    assert set(np.unique(mask)) == {0, ADDED, REMOVED}
    assert (mask[2:10, 2:20] == ADDED).all()  # the split parts, over the merge they replace
    assert (mask[30:38, 30:38] == REMOVED).all() and (mask[15:22, 15:22] == ADDED).all()
    assert mask[0, 0] == 0


def test_refuses_labels_of_another_shape_or_a_threshold_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"differ in shape: \(40, 40\) and \(20, 40\)"):
        compare_labels(boxes(), np.zeros((20, 40), np.uint16))
    with pytest.raises(ValueError, match="iou_threshold"):
        compare_labels(boxes(), boxes(), iou_threshold=1.5)
