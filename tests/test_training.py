"""Training: targets, sampling, losses, a short run with resume, DDP over two CPU ranks, fine-tuning."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_usema.io.checkpoint import load_checkpoint, read_metadata
from napari_usema.io.metadata import CheckpointMetadata, NormalizationRecipe
from napari_usema.model import preset
from napari_usema.training.batches import batch_stream
from napari_usema.training.data import AugmentConfig, PatchSampler, make_sample
from napari_usema.training.finetune import FINETUNE_DEFAULTS, CorrectedPair, FinetuneError, finetune, versioned_path
from napari_usema.training.losses import deep_supervision_loss, dice_ce_loss
from napari_usema.training.trainer import (
    TrainingConfig,
    output_paths,
    schedule_factor,
    steps_for_epochs,
    train,
)

HERE = Path(__file__).parent


def blobs(seed: int, shape: tuple[int, int] = (64, 64), n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        y, x = rng.integers(6, shape[0] - 6), rng.integers(6, shape[1] - 6)
        labels[y - 4 : y + 4, x - 4 : x + 4] = k
    image = (labels > 0) * 200 + rng.integers(0, 30, shape)
    return image.astype(np.uint8), labels


def sample(seed: int, **kw):
    image, labels = blobs(seed)
    return make_sample(f"s{seed}", image, labels, task="instance", in_channels=1, recipe=NormalizationRecipe(), **kw)


def test_patch_sampler_shapes_and_foreground_oversampling() -> None:
    s = sample(0)
    sampler = PatchSampler([s], patch=32, augment=AugmentConfig(), foreground_oversample=1.0)
    images, targets, weights = sampler.batch([0, 0, 0, 0], np.random.default_rng(0))
    assert images.shape == (4, 1, 32, 32) and targets.shape == (4, 32, 32) and weights.shape == (4, 32, 32)
    assert all((t > 0).any() for t in targets)  # every patch centred near a cell
    assert set(np.unique(targets.numpy())) <= {0, 1, 2}


def test_batches_drawn_ahead_on_threads_equal_those_drawn_inline() -> None:
    sampler = PatchSampler([sample(0), sample(1), sample(2)], patch=32, augment=AugmentConfig())
    calls: list[int] = []

    def plan(step: int) -> tuple[list[int], np.random.Generator]:
        calls.append(step)
        return [step % 3, (step + 1) % 3], np.random.default_rng([7, step])

    inline = list(batch_stream(sampler, plan, 2, 9, ahead=0))
    assert calls == list(range(2, 9))
    calls.clear()
    threaded = list(batch_stream(sampler, plan, 2, 9, ahead=3))
    assert calls == list(range(2, 9))  # planned in step order: the index stream keeps state
    assert len(threaded) == len(inline) == 7
    for a, b in zip(inline, threaded, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    calls.clear()
    early = batch_stream(sampler, plan, 0, 100, ahead=3)
    next(early), next(early)
    early.close()  # a run stopped by the clock or cancelled: queued batches are dropped
    assert calls == [0, 1, 2, 3, 4]


def test_small_images_are_padded_with_zero_weight() -> None:
    image, labels = blobs(1, shape=(20, 24), n=1)
    s = make_sample("small", image, labels, task="instance", in_channels=1, recipe=NormalizationRecipe())
    _, _, weights = PatchSampler([s], patch=32, augment=None).batch([0], np.random.default_rng(0))
    assert weights.sum() == 20 * 24


def test_samples_are_resized_to_the_model_scale() -> None:
    image, labels = blobs(2, shape=(64, 80), n=4)
    region = np.zeros(labels.shape, bool)
    region[:32] = True
    s = make_sample("half", image, labels, task="instance", in_channels=1, recipe=NormalizationRecipe(), region=region, scale=0.5)
    assert s.image.shape == (1, 32, 40) and s.target.shape == s.labels.shape == s.region.shape == (32, 40)
    assert s.region[:16].all() and not s.region[16:].any()
    assert set(np.unique(s.labels)) == set(np.unique(labels))  # 8x8 blobs survive halving, ids intact


def test_inversion_augmentation_flips_intensities_only() -> None:
    s = sample(3)
    plain = AugmentConfig(flips=False, rot90=False, scale_range=(1, 1), intensity=0, blur_probability=0, noise=0)
    inverted = dataclasses.replace(plain, invert_probability=1.0)
    a = PatchSampler([s], 32, plain).batch([0], np.random.default_rng(5))
    b = PatchSampler([s], 32, inverted).batch([0], np.random.default_rng(5))
    torch.testing.assert_close(b[0], 1 - a[0])
    assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_colour_jitter_changes_each_channel_by_its_own_gain_and_offset() -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    labels = np.zeros((40, 40), np.int32)
    labels[10:20, 10:20] = 1
    s = make_sample("rgb", image, labels, task="semantic", in_channels=3, recipe=NormalizationRecipe())
    plain = AugmentConfig(flips=False, rot90=False, scale_range=(1, 1), intensity=0, blur_probability=0, noise=0)
    coloured = dataclasses.replace(plain, colour=0.3)
    a = PatchSampler([s], 32, plain).batch([0], np.random.default_rng(5))
    b = PatchSampler([s], 32, coloured).batch([0], np.random.default_rng(5))
    assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])  # geometry and targets untouched
    gains = []
    for c in range(3):  # each channel is an affine map of the plain one, with gain in [0.7, 1.3]
        x, y = a[0][0, c].flatten().numpy(), b[0][0, c].flatten().numpy()
        gain, offset = np.polyfit(x, y, 1)
        np.testing.assert_allclose(y, gain * x + offset, atol=1e-4)
        assert 0.7 <= gain <= 1.3 and abs(offset) <= 0.15
        gains.append(gain)
    assert len({round(g, 4) for g in gains}) == 3  # not one shared gain


def test_loss_is_low_for_the_right_answer_and_respects_weights() -> None:
    target = torch.randint(0, 3, (2, 16, 16))
    good = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 20
    bad = -good
    weight = torch.ones(2, 16, 16)
    assert dice_ce_loss(good, target, weight) < 0.01 < dice_ce_loss(bad, target, weight)
    assert dice_ce_loss(bad, target, torch.zeros_like(weight)) < 1.01  # only the empty-dice term is left
    multi = deep_supervision_loss([good, good[..., ::2, ::2]], target, weight)
    assert multi < 0.01


def test_training_runs_saves_and_resumes(tmp_path: Path) -> None:
    config = preset("tiny")
    meta = CheckpointMetadata(config, "instance", provenance={"data": "blobs"})
    schedule = TrainingConfig(steps=4, patch=32, batch=2, val_every=2, device="cpu", warmup_steps=1, val_tile=64)
    out = tmp_path / "m.safetensors"
    records = list(train([sample(0), sample(1)], [sample(2)], meta, schedule, out))
    assert [r.step for r in records] == [1, 2, 3, 4]
    assert records[1].val_metric is not None and records[0].val_metric is None
    last, state = output_paths(out)
    assert out.exists() and last.exists() and state.exists()
    assert read_metadata(last).provenance["steps"] == 4 and read_metadata(out).provenance["data"] == "blobs"
    resumed = list(
        train([sample(0), sample(1)], [sample(2)], meta, TrainingConfig(**{**schedule.__dict__, "steps": 6}), out, resume=True)
    )
    assert [r.step for r in resumed] == [5, 6]


def test_cosine_follows_whichever_budget_runs_out_first() -> None:
    by_steps = TrainingConfig(steps=110, warmup_steps=10)
    assert schedule_factor(by_steps, 0, 0.0) == pytest.approx(0.1)  # warm-up
    assert schedule_factor(by_steps, 60, 1e6) == pytest.approx(0.5)  # no budget: the clock is ignored
    timed = dataclasses.replace(by_steps, steps=10_000, time_budget_s=100.0)
    assert schedule_factor(timed, 60, 50.0) == pytest.approx(0.5)  # half the time spent
    assert schedule_factor(timed, 60, 100.0) == pytest.approx(0.0)


def test_a_time_budget_ends_the_run_validated_and_saved(tmp_path: Path) -> None:
    meta = CheckpointMetadata(preset("tiny"), "instance")
    schedule = TrainingConfig(
        steps=100_000, patch=32, batch=2, val_every=0, device="cpu", warmup_steps=1, val_tile=64, time_budget_s=1.0
    )
    out = tmp_path / "m.safetensors"
    records = list(train([sample(0)], [sample(2)], meta, schedule, out))
    assert 1 < len(records) < 100_000
    assert records[-1].val_metric is not None and records[-1].event == "best"
    assert records[-1].lr == 0.0 and records[0].lr > 0  # the cosine reached its end with the clock
    assert read_metadata(out).provenance["steps"] == records[-1].step


def test_training_learns_blobs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = preset("tiny")
    meta = CheckpointMetadata(config, "instance")
    schedule = TrainingConfig(steps=60, patch=32, batch=4, lr=3e-3, val_every=0, device="cpu", warmup_steps=5, val_tile=64)
    records = list(train([sample(i) for i in range(4)], [sample(9)], meta, schedule, tmp_path / "m.safetensors"))
    assert np.mean([r.loss for r in records[-10:]]) < 0.6 * np.mean([r.loss for r in records[:5]])
    assert records[-1].val_metric > 0.5  # F1@0.5 on a held-out blob image


@pytest.mark.slow
def test_ddp_two_cpu_ranks_hold_identical_weights(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", str(HERE / "ddp_worker.py"), str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name, tensor in rank0["state"].items():
        assert torch.equal(tensor, rank1["state"][name]), name
    assert rank0["losses"] != rank1["losses"]  # each rank drew its own patches
    assert (tmp_path / "ddp.safetensors").exists()


def test_finetune_writes_a_new_checkpoint_and_never_touches_the_parent(tmp_path: Path) -> None:
    from conftest import make_checkpoint

    parent_path = make_checkpoint(tmp_path / "parent.safetensors")
    before = parent_path.read_bytes()
    parent = load_checkpoint(parent_path)
    weights_before = {k: v.clone() for k, v in parent.model.state_dict().items()}
    image, labels = blobs(3)
    region = np.zeros(labels.shape, bool)
    region[:32] = True
    out = versioned_path(parent_path)
    assert out.name == "parent.ft1.safetensors"
    schedule = TrainingConfig(**{**FINETUNE_DEFAULTS.__dict__, "steps": 3, "patch": 32, "device": "cpu"})
    records = list(finetune(parent, [CorrectedPair(image, labels, region, "blobs")], out, schedule))
    assert len(records) == 3
    assert parent_path.read_bytes() == before
    assert all(torch.equal(v, parent.model.state_dict()[k]) for k, v in weights_before.items())
    child = read_metadata(out)
    assert child.provenance["parent"] == str(parent_path) and child.provenance["data"] == ["blobs"]
    assert child.provenance["steps"] == 3 and child.provenance["kind"] == "fine-tune"
    assert versioned_path(parent_path).name == "parent.ft2.safetensors"
    assert versioned_path(tmp_path / "parent.zip").name == "parent.ft2.safetensors"  # from a BioImage.IO package
    assert not output_paths(out)[1].exists()  # no resumable state clutter for fine-tunes


def test_finetune_refuses_bad_requests(tmp_path: Path) -> None:
    from conftest import make_checkpoint

    parent_path = make_checkpoint(tmp_path / "parent.safetensors")
    parent = load_checkpoint(parent_path)
    image, labels = blobs(4)
    with pytest.raises(FinetuneError, match="must not replace its parent"):
        list(finetune(parent, [CorrectedPair(image, labels)], parent_path))
    with pytest.raises(FinetuneError, match="the labels are empty"):
        list(finetune(parent, [CorrectedPair(image, np.zeros_like(labels))], tmp_path / "a.safetensors"))
    with pytest.raises(FinetuneError, match="corrected region is empty"):
        list(finetune(parent, [CorrectedPair(image, labels, np.zeros(labels.shape, bool))], tmp_path / "b.safetensors"))
    (tmp_path / "c.safetensors").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        list(finetune(parent, [CorrectedPair(image, labels)], tmp_path / "c.safetensors"))
    assert (tmp_path / "c.safetensors").read_bytes() == b"mine"


def _lineage_of(path: Path) -> dict:
    parent = read_metadata(path).provenance
    return {k: parent[k] for k in ("data", "preset", "steps", "val_metric", "init", "init_provenance", "parent") if k in parent}


def test_usema_train_cli_with_init_and_resume(tmp_path: Path) -> None:
    import tifffile

    from conftest import make_checkpoint
    from napari_usema.cli.main import main

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i in range(3):
        image, labels = blobs(10 + i)
        tifffile.imwrite(data / "images" / f"b{i}.tif", image)
        tifffile.imwrite(data / "masks" / f"b{i}.tif", labels.astype(np.uint16))
    (tmp_path / "val.txt").write_text("b2\n")
    init = make_checkpoint(tmp_path / "init.safetensors", in_channels=3)
    out = tmp_path / "run" / "m.safetensors"
    args = [
        "train",
        "--data",
        str(data),
        "--task",
        "instance",
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--val-list",
        str(tmp_path / "val.txt"),
        "--steps",
        "2",
        "--patch",
        "32",
        "--batch",
        "2",
        "--val-every",
        "1",
        "--device",
        "cpu",
        "--init",
        str(init),
    ]
    assert main(args) == 0
    provenance = read_metadata(out).provenance
    assert provenance["val_names"] == ["b2"]
    assert provenance["init"] == str(init) and provenance["init_provenance"] == _lineage_of(init)
    assert main([*args[:-2], "--steps", "3", "--resume"]) == 0
    assert read_metadata(output_paths(out)[0]).provenance["steps"] == 3
    assert (tmp_path / "run" / "m.log.jsonl").read_text().count('"step"') >= 3
    # --epochs instead of --steps: 2 training images, batch 2, 2.5 passes -> 3 steps.
    by_epochs = [a if a != str(out) else str(tmp_path / "e.safetensors") for a in args[:-2]]
    i = by_epochs.index("--steps")
    assert main([*by_epochs[:i], "--epochs", "2.5", *by_epochs[i + 2 :], "--colour-jitter", "0.1"]) == 0
    provenance = read_metadata(output_paths(tmp_path / "e.safetensors")[0]).provenance
    assert provenance["steps"] == 3 and provenance["training"]["augment"]["colour"] == 0.1
    with pytest.raises(SystemExit):  # one length, not two
        main([*by_epochs, "--epochs", "2"])


def test_steps_for_epochs_count_each_process_share() -> None:
    assert steps_for_epochs(1, images=500, batch=32) == 16  # ceil(500 / 32)
    assert steps_for_epochs(2, images=500, batch=32, world_size=2) == 16  # 250 images a process
    assert steps_for_epochs(1, images=5, batch=2, world_size=2) == 2  # shares padded to 3
    assert steps_for_epochs(0.01, images=3, batch=8) == 1  # at least one step


def test_patches_of_a_corrected_region_always_carry_loss() -> None:
    from napari_usema.io.metadata import NormalizationRecipe
    from napari_usema.training.data import PatchSampler, make_sample

    labels = np.zeros((256, 256), np.uint16)
    labels[200:220, 30:50] = 1
    region = np.zeros((256, 256), bool)
    region[190:230, 20:60] = True  # one corrected nucleus, in a corner
    image = np.random.default_rng(0).random((256, 256)).astype(np.float32)
    sample = make_sample("corner", image, labels, task="instance", in_channels=1, recipe=NormalizationRecipe(), region=region)
    sampler = PatchSampler([sample], 64, None, foreground_oversample=0.0)
    rng = np.random.default_rng(1)
    weights = [sampler.draw(0, rng)[2] for _ in range(50)]
    assert all(w.sum() > 0 for w in weights)  # without centring on the region, most 64-px patches miss it
