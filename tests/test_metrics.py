"""Metrics against small hand-worked cases, and their edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from napari_usema.analysis.metrics import dice, instance_f1, iou_matrix, normalized_surface_distance, semantic_scores


def test_iou_matrix_by_hand() -> None:
    truth = np.array([[1, 1, 0, 0], [1, 1, 0, 2]])
    pred = np.array([[5, 5, 5, 0], [5, 5, 0, 0]])
    # truth 1 (4 px) vs pred 5 (5 px): overlap 4, union 5; truth 2 has no overlap.
    np.testing.assert_allclose(iou_matrix(truth, pred), [[0.8], [0.0]])


def test_instance_f1_hand_worked() -> None:
    truth = np.zeros((10, 10), int)
    truth[0:4, 0:4] = 1  # matched by pred 1 (IoU 16/20 = 0.8)
    truth[6:10, 6:10] = 2  # missed: pred 2 overlaps with IoU 4/28 < 0.5
    truth[0:2, 8:10] = 3  # missed entirely
    pred = np.zeros((10, 10), int)
    pred[0:4, 0:5] = 1
    pred[8:10, 8:10] = 2
    pred[5:7, 0:2] = 3  # a false positive
    score = instance_f1(truth, pred)
    assert (score.true_positives, score.false_positives, score.false_negatives) == (1, 2, 2)
    assert score.precision == pytest.approx(1 / 3)
    assert score.recall == pytest.approx(1 / 3)
    assert score.f1 == pytest.approx(2 * 1 / (2 * 1 + 2 + 2))


def test_matching_is_one_to_one() -> None:
    # One big prediction covering two truths can match at most one of them.
    truth = np.zeros((4, 8), int)
    truth[:, :4], truth[:, 4:] = 1, 2
    pred = np.ones((4, 8), int)
    score = instance_f1(truth, pred, iou_threshold=0.3)
    assert score.true_positives == 1 and score.false_negatives == 1


@pytest.mark.parametrize(
    ("truth_objects", "pred_objects", "f1"),
    [(False, False, 1.0), (True, False, 0.0), (False, True, 0.0)],
)
def test_empty_cases_are_defined(truth_objects: bool, pred_objects: bool, f1: float) -> None:
    truth = np.zeros((5, 5), int)
    pred = np.zeros((5, 5), int)
    truth[1:3, 1:3] = truth_objects
    pred[2:4, 2:4] = pred_objects
    score = instance_f1(truth, pred)
    assert score.f1 == f1 and not np.isnan([score.precision, score.recall]).any()


def test_dice_by_hand_and_empty() -> None:
    a = np.array([[1, 1, 0, 0]])
    b = np.array([[0, 1, 1, 1]])
    assert dice(a, b) == pytest.approx(2 * 1 / (2 + 3))
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert dice(np.ones((3, 3)), np.zeros((3, 3))) == 0.0


def test_nsd_by_hand() -> None:
    truth = np.zeros((20, 20), bool)
    truth[5:15, 5:15] = True
    assert normalized_surface_distance(truth, truth) == 1.0
    shifted = np.roll(truth, 1, axis=1)
    assert normalized_surface_distance(truth, shifted, tolerance=1) == 1.0
    far = np.roll(truth, 5, axis=1)
    # Only the top/bottom edges that still overlap lie within 1 px of each other.
    assert 0 < normalized_surface_distance(truth, far, tolerance=1) < 1
    assert normalized_surface_distance(truth, np.zeros_like(truth)) == 0.0
    assert normalized_surface_distance(np.zeros_like(truth), np.zeros_like(truth)) == 1.0


def test_semantic_scores_per_class_and_mean() -> None:
    truth = np.array([[0, 1, 1, 2]])
    pred = np.array([[0, 1, 2, 2]])
    scores = semantic_scores(truth, pred, [1, 2])
    assert scores["dsc"]["1"] == pytest.approx(2 / 3)
    assert scores["dsc"]["2"] == pytest.approx(2 / 3)
    assert scores["dsc"]["mean"] == pytest.approx(2 / 3)
    assert set(scores["nsd"]) == {"1", "2", "mean"}
