"""Settings out of range are refused where they are made (the config dataclasses), so the command line,
the widgets and the API give the same message, naming the allowed range, before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_usema.cli.main import main
from napari_usema.inference.devices import select_device
from napari_usema.inference.tiling import TilingConfig
from napari_usema.postprocess.config import WatershedConfig
from napari_usema.training.data import AugmentConfig
from napari_usema.training.trainer import TrainingConfig


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: WatershedConfig(interior_threshold=2), "interior_threshold must be a number >= 0 and <= 1"),
        (lambda: WatershedConfig(foreground_threshold=-1), "foreground_threshold must be a number >= 0 and <= 1"),
        (lambda: WatershedConfig(foreground_threshold=float("nan")), "foreground_threshold must be a number"),
        (lambda: WatershedConfig(min_size=-1), "min_size must be an integer >= 0"),
        (lambda: WatershedConfig(min_size=2.5), "min_size must be an integer"),
        (lambda: WatershedConfig(mode="bogus"), "mode must be one of 'watershed', 'connected-components'"),
        (lambda: WatershedConfig(fill_holes="yes"), "fill_holes must be True or False"),
        (lambda: TilingConfig(sigma_scale=0), "sigma_scale must be a number > 0"),
        (lambda: TilingConfig(tile="a"), "tile must be an integer >= 16"),
        (lambda: TilingConfig(overlap=1.0), "overlap must be a number >= 0 and < 1"),
        (lambda: TilingConfig(batch=-1), "batch must be an integer >= 0"),
        (lambda: TilingConfig(device=None), "device must be a name"),
        (lambda: TrainingConfig(steps=0), "steps must be an integer >= 1"),
        (lambda: TrainingConfig(patch=0), "patch must be an integer >= 16"),
        (lambda: TrainingConfig(batch=0), "batch must be an integer >= 1"),
        (lambda: TrainingConfig(lr=0), "lr must be a number > 0"),
        (lambda: TrainingConfig(foreground_oversample=1.5), "foreground_oversample must be a number >= 0 and <= 1"),
        (lambda: TrainingConfig(time_budget_s=-3), "time_budget_s must be a number > 0"),
        (lambda: WatershedConfig().replace(interior_threshold=5.0), "interior_threshold must be"),
    ],
)
def test_configs_refuse_values_out_of_range(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("name", ["tpu", "cuda:7", "gpu", "cuda"])
def test_unknown_or_absent_devices_name_what_this_machine_has(name: str) -> None:
    import torch

    if name == "cuda" and torch.cuda.is_available():
        assert select_device(name).type == "cuda"  # present here: accepted
        return
    with pytest.raises(ValueError, match="this machine has"):
        select_device(name)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "a.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8))
    return path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--interior-threshold", "2"], "interior_threshold must be a number >= 0 and <= 1"),
        (["--foreground-threshold", "-1"], "foreground_threshold must be a number >= 0 and <= 1"),
        (["--min-size", "-1"], "min_size must be an integer >= 0"),
        (["--batch", "-1"], "batch must be an integer >= 0"),
        (["--overlap", "1"], "overlap must be a number >= 0 and < 1"),
        (["--device", "tpu"], "this machine has: auto, cpu"),
    ],
)
def test_predict_options_out_of_range(
    image: Path, tmp_path: Path, tiny_instance_checkpoint: Path, capsys, options, message
) -> None:
    out = tmp_path / "out"
    assert main(["predict", str(image), "--model", str(tiny_instance_checkpoint), "--out", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() or not list(out.iterdir())  # nothing written


@pytest.mark.parametrize("tolerance", ["-5", "nan", "inf"])
def test_evaluate_tolerance_must_be_a_distance(tmp_path: Path, capsys, tolerance: str) -> None:
    for sub in ("p", "t"):
        (tmp_path / sub).mkdir()
        tifffile.imwrite(tmp_path / sub / "a.tif", np.zeros((8, 8), np.uint8))
    assert main(["evaluate", "--pred", str(tmp_path / "p"), "--truth", str(tmp_path / "t"), "--tolerance", tolerance]) == 2
    assert "--tolerance must be a number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--steps", "0"], "steps must be an integer >= 1"),
        (["--patch", "0"], "patch must be an integer >= 16"),
        (["--batch", "0"], "batch must be"),
    ],
)
def test_finetune_schedule_out_of_range_writes_nothing(
    image: Path, tmp_path: Path, tiny_instance_checkpoint: Path, capsys, options, message
) -> None:
    labels = tmp_path / "labels.tif"
    tifffile.imwrite(labels, np.pad(np.ones((8, 8), np.uint16), 16)[:40, :50])
    out = tmp_path / "ft.safetensors"
    argv = [
        "finetune",
        "--model",
        str(tiny_instance_checkpoint),
        "--image",
        str(image),
        "--labels",
        str(labels),
        "--out",
        str(out),
    ]
    assert main([*argv, *options]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["dispersion", "--model", "nuclei", "--image", "IMG", "--out", "OUT", "--crops", "0"],
        ["dispersion", "--model", "nuclei", "--image", "IMG", "--out", "OUT", "--crops=-5"],
        ["dispersion", "--model", "nuclei", "--image", "IMG", "--out", "OUT", "--eps=-1"],
        ["bench", "postprocess", "--size", "0"],
        ["bench", "postprocess", "--size=-5"],
    ],
    ids=["crops-0", "crops-negative", "eps-negative", "bench-size-0", "bench-size-negative"],
)
def test_more_options_out_of_range_are_usage_errors(image: Path, tmp_path: Path, argv: list[str], capsys) -> None:
    argv = [str(image) if a == "IMG" else str(tmp_path / "o") if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AugmentConfig(colour=-1), r"colour \(--colour-jitter\) must be a number >= 0"),
        (lambda: AugmentConfig(invert_probability=2), r"invert_probability \(--invert-probability\) must be"),
        (lambda: AugmentConfig(scale_range=(1.4, 0.7)), "scale_range high must be"),
    ],
)
def test_augmentation_settings_are_checked(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
