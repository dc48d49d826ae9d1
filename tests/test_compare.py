"""What a re-run changed: objects added, removed and kept, matched by overlap."""

from __future__ import annotations

import numpy as np
import pytest

from napari_usema.postprocess.compare import ADDED, REMOVED, compare_labels


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
    changes, mask = compare_labels(before, after)
    assert (changes.added, changes.removed, changes.kept) == (0, 0, 2) and not mask.any()
    assert changes.summary() == "no object changed (2 kept)"


def test_a_split_is_one_removed_and_its_parts_added_and_the_mask_marks_them() -> None:
    before = boxes((2, 10, 2, 20), (30, 38, 30, 38))  # a merge, and one that the new run misses
    after = boxes((2, 10, 2, 8), (2, 10, 8, 14), (2, 10, 14, 20), (15, 22, 15, 22))  # split in three, and a new one
    changes, mask = compare_labels(before, after)
    assert (changes.added, changes.removed, changes.kept) == (4, 2, 0)
    assert changes.summary() == "4 added, 2 removed, 0 kept"
    assert set(np.unique(mask)) == {0, ADDED, REMOVED}
    assert (mask[2:10, 2:20] == ADDED).all()  # the split parts, over the merge they replace
    assert (mask[30:38, 30:38] == REMOVED).all() and (mask[15:22, 15:22] == ADDED).all()
    assert mask[0, 0] == 0


def test_planes_segmented_apart_are_compared_one_by_one() -> None:
    """Unlinked planes reuse ids (object 1 of plane 0 is not object 1 of plane 1): compared as one
    volume, dropping plane 1's object would go unseen."""
    before = np.stack([boxes((2, 10, 2, 10), (20, 30, 20, 30)), boxes((2, 10, 2, 10), (20, 30, 20, 30))])
    after = before.copy()
    after[1][after[1] == 2] = 0  # the new run misses one object in plane 1
    after[1, 30:38, 2:10] = 5  # and finds another there
    whole, _ = compare_labels(before, after)
    planes, mask = compare_labels(before, after, frame_ndim=2)
    assert (planes.added, planes.removed, planes.kept) == (1, 1, 3)
    assert (whole.added, whole.removed) != (1, 1)  # what a volume-wide comparison gets wrong
    assert (mask[1, 20:30, 20:30] == REMOVED).all() and (mask[1, 30:38, 2:10] == ADDED).all() and not mask[0].any()


def test_ties_at_one_half_get_one_partner_each() -> None:
    before = boxes((2, 10, 2, 18))  # 128 pixels
    after = boxes((2, 10, 2, 10), (2, 10, 10, 18))  # two halves: IoU exactly 0.5 each
    changes, _ = compare_labels(before, after)
    assert (changes.added, changes.removed, changes.kept) == (1, 0, 1)


def test_refuses_labels_of_another_shape_or_a_threshold_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"differ in shape: \(40, 40\) and \(20, 40\)"):
        compare_labels(boxes(), np.zeros((20, 40), np.uint16))
    with pytest.raises(ValueError, match="iou_threshold"):
        compare_labels(boxes(), boxes(), iou_threshold=1.5)
