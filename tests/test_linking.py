"""Z stitching and time tracking, on stacks made from real nuclei (DSB 2018) by cropping and shifting,
where the expected identities are known: the ground-truth ids themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.segmentation import find_boundaries

from napari_usema.cli.main import main
from napari_usema.inference.pipeline import drive, segment
from napari_usema.io.bundled import resolve_model
from napari_usema.io.checkpoint import load_checkpoint
from napari_usema.io.image_info import open_image
from napari_usema.io.images import find_pairs, read_image
from napari_usema.postprocess.linking import StackLinks, iou_pairs, stitch, track

STEP = (3, 2)  # the drift per frame, in pixels (rows, columns)
CROP = 200


@pytest.fixture(scope="module")
def real(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real 256x256 fluorescence image with 42 nuclei and its ground-truth instance labels."""
    image, mask = find_pairs(shared_data / "microscopy")["dsb2018s1test_4be73d68f4338691"]
    return read_image(image), read_image(mask).astype(np.uint16)


def drift(array: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` crops of ``CROP`` pixels, each ``STEP`` further into ``array``: a field of view that drifts."""
    return np.stack([array[t * STEP[0] : t * STEP[0] + CROP, t * STEP[1] : t * STEP[1] + CROP] for t in range(frames)])


def assert_same_partition(linked: np.ndarray, truth: np.ndarray, keep: np.ndarray) -> None:
    """Over the ground-truth ids in ``keep``, linked ids and true ids name the same objects, one to one."""
    inside = np.isin(truth, keep)
    pairs = np.unique(np.stack([truth[inside], linked[inside]], axis=1), axis=0)  # (true id, linked id) that co-occur
    assert (pairs[:, 1] > 0).all(), "an object was lost"
    assert len(np.unique(pairs[:, 0])) == len(pairs), "an object changed id"
    assert len(np.unique(pairs[:, 1])) == len(pairs), "two objects share an id"


def interior_ids(frames: np.ndarray) -> np.ndarray:
    """Ground-truth ids that touch the crop's border in no frame (their IoU is not cut by the edge)."""
    border = np.zeros(frames.shape[1:], bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    on_border = np.unique(frames[:, border])
    present = np.unique(frames[frames > 0])
    return np.setdiff1d(present, on_border)


def test_tracking_keeps_each_nucleus_its_id_as_the_field_drifts(real) -> None:
    truth = drift(real[1], 5)
    scrambled = np.stack([_scramble(f, seed) for seed, f in enumerate(truth)])  # per-frame ids mean nothing
    tracked = track(scrambled, 0.25)
    keep = interior_ids(truth)
    assert len(keep) >= 10
    assert_same_partition(tracked, truth, keep)


def test_objects_that_appear_get_new_ids_and_those_that_leave_free_theirs(real) -> None:
    truth = drift(real[1], 4)
    keep = interior_ids(truth)
    leaves, arrives = int(keep[0]), int(keep[1])
    frames = truth.copy()
    frames[2:][frames[2:] == leaves] = 0  # gone from frame 2 on
    frames[:2][frames[:2] == arrives] = 0  # there from frame 2 on
    tracked = track(np.stack([_scramble(f, s) for s, f in enumerate(frames)]), 0.25)
    left_id = np.unique(tracked[1][truth[1] == leaves])
    assert len(left_id) == 1 and not (tracked[2:] == left_id[0]).any()  # its id is given to nobody after
    new_id = np.unique(tracked[2][truth[2] == arrives])
    assert len(new_id) == 1 and new_id[0] > tracked[:2].max()  # a new id, never used before
    assert (np.unique(tracked[3][truth[3] == arrives]) == new_id).all()  # and it keeps it


def test_stitching_joins_planes_into_3d_nuclei_without_merging_neighbours(real) -> None:
    mask = real[1]
    thinner = np.where(find_boundaries(mask, mode="inner"), 0, mask)  # each nucleus one pixel smaller
    thinnest = np.where(find_boundaries(thinner, mode="inner"), 0, thinner)
    only_middle = int(np.unique(mask[mask > 0])[5])
    stack = np.stack([thinnest, thinner, mask, thinner, thinnest])
    stack[[0, 1, 3, 4]] = np.where(stack[[0, 1, 3, 4]] == only_middle, 0, stack[[0, 1, 3, 4]])
    stitched = stitch(np.stack([_scramble(p, s) for s, p in enumerate(stack)]), 0.3)
    present = np.unique(stack[stack > 0])
    assert_same_partition(stitched, stack, present)  # one 3-D id per nucleus, touching nuclei apart
    assert stitched.max() == len(present)
    middle = np.unique(stitched[2][stack[2] == only_middle])
    assert len(middle) == 1 and [int((p == middle[0]).any()) for p in stitched] == [0, 0, 1, 0, 0]


def test_iou_pairs_and_one_to_one_matching() -> None:
    a = np.zeros((1, 10), np.uint8)
    b = np.zeros((1, 10), np.uint8)
    a[0, 0:4], b[0, 2:6] = 1, 7  # 2 shared of 6
    pid, cid, iou = iou_pairs(a, b)
    assert (pid.tolist(), cid.tolist(), iou.tolist()) == ([1], [7], [pytest.approx(2 / 6)])
    # One object of the earlier frame split in two: only the better half keeps its id.
    before = np.zeros((1, 12), np.uint8)
    before[0, 0:10] = 1
    after = np.zeros((1, 12), np.uint8)
    after[0, 0:6], after[0, 6:10] = 1, 2
    linked = track(np.stack([before, after]), 0.25)
    assert linked[1, 0, 0] == 1 and linked[1, 0, 7] == 2


def test_link_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"the stitch IoU threshold must be a number > 0 and <= 1"):
        StackLinks(stitch=0)
    with pytest.raises(ValueError, match="stitching joins objects over Z, and these labels' axes are TYX"):
        StackLinks(stitch=0.3).check("TYX")
    with pytest.raises(ValueError, match="tracking links objects over T, and these labels' axes are ZYX"):
        StackLinks(track=0.3).check("ZYX")


def test_a_semantic_model_and_a_stack_without_t_are_refused_before_any_work(tiny_semantic_checkpoint: Path) -> None:
    stack = np.zeros((3, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="for instance models"):
        drive(segment(load_checkpoint(tiny_semantic_checkpoint), stack, links=StackLinks(track=0.25)))


# --- end to end: the bundled model, the command line ----------------------------------------------


def agreement(labels: np.ndarray) -> float:
    """Over pixels of neighbouring frames that show the same place of the drifting field, the share
    of object pixels whose id is the same in both."""
    shares = []
    for t in range(len(labels) - 1):
        here = labels[t][STEP[0] :, STEP[1] :]  # frame t, seen from frame t+1's origin
        there = labels[t + 1][: CROP - STEP[0], : CROP - STEP[1]]
        both = (here > 0) & (there > 0)
        shares.append(float((here[both] == there[both]).mean()))
    return min(shares)


def test_track_on_the_command_line_with_the_bundled_model(real, tmp_path: Path, capsys) -> None:
    movie = tmp_path / "movie.tif"
    tifffile.imwrite(movie, drift(real[0], 3), imagej=True, metadata={"axes": "TYX"})
    assert main(["predict", str(movie), "--model", "nuclei", "--out", str(tmp_path / "plain")]) == 0
    assert main(["predict", str(movie), "--model", "nuclei", "--out", str(tmp_path / "out"), "--track"]) == 0
    plain, tracked = tifffile.imread(tmp_path / "plain" / "movie.tif"), tifffile.imread(tmp_path / "out" / "movie.tif")
    assert tracked.shape == (3, CROP, CROP) and open_image(tmp_path / "out" / "movie.tif")[1].axes == "TYX"
    # Each frame numbers its nuclei from 1 (in raster order, so the drift keeps many ids by luck); tracked,
    # a nucleus keeps one id, and the ids over the whole movie are about as many as the nuclei in a frame.
    assert agreement(tracked) > max(0.97, agreement(plain))
    per_frame = max(len(np.unique(f)) - 1 for f in plain)
    assert per_frame >= 20 and len(np.unique(tracked)) - 1 <= 1.2 * per_frame
    assert main(["predict", str(movie), "--model", "nuclei", "--out", str(tmp_path / "bad"), "--stitch", "0.3"]) == 2
    assert "stitching joins objects over Z, and these labels' axes are TYX" in capsys.readouterr().err


def test_stitch_in_the_engine_with_the_bundled_model(real) -> None:
    image = real[0]
    stack = np.stack([image, image, np.roll(image, 1, axis=0)])  # a nucleus a plane: nearly the same
    result = drive(segment(load_checkpoint(resolve_model("nuclei")), stack, axes="ZYX", links=StackLinks(stitch=0.3)))
    ids = [set(np.unique(p[p > 0])) for p in result.labels]
    assert result.axes == "ZYX" and len(ids[0]) >= 30
    assert len(ids[0] & ids[1] & ids[2]) >= 0.9 * len(ids[0])  # the same nuclei, the same ids in every plane


def _scramble(labels: np.ndarray, seed: int) -> np.ndarray:
    """``labels`` with its ids permuted at random, so a test cannot pass on ids that already agree."""
    ids = np.unique(labels[labels > 0])
    table = np.zeros(int(labels.max()) + 1, np.uint16)
    table[ids] = np.random.default_rng(seed).permutation(len(ids)) + 1
    return table[labels]
