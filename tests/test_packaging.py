"""Packaging contracts: the engine loads no GUI, the manifest resolves, the CLI answers."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import yaml

import napari_usema

ROOT = Path(__file__).resolve().parents[1]
GUI_MODULES = ("qtpy", "napari", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy", "superqt")
FRONT_ENDS = ("napari_usema._widgets", "napari_usema._sample_data", "napari_usema.cli.demo")


def engine_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(napari_usema.__path__, "napari_usema."):
        if not info.name.startswith(FRONT_ENDS):
            names.append(info.name)
    return names


def test_engine_imports_no_gui_toolkit() -> None:
    modules = engine_modules()
    assert "napari_usema.inference.predictor" in modules and "napari_usema.model.attention" in modules
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {GUI_MODULES!r}])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_package_init_stays_light() -> None:
    code = "import sys, napari_usema; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_manifest_python_name_resolves() -> None:
    manifest = yaml.safe_load((ROOT / "napari.yaml").read_text())
    names = [c["python_name"] for c in manifest["contributions"]["commands"]]
    assert names
    for name in names:
        module, attr = name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_manifest_validates_with_npe2() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    assert manifest.name == "napari-usema"


def test_cli_help_and_info_preset() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "napari_usema.cli.main", "info", "--preset", "small"], capture_output=True, text=True, check=True
    ).stdout
    report = json.loads(out)
    assert report["preset"] == "small" and 1e6 < report["parameters"] <= 8e6
    assert report["config"]["window_size"] == 16
    help_text = subprocess.run(
        [sys.executable, "-m", "napari_usema.cli.main", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("predict", "evaluate", "train", "finetune", "info", "bench"):
        assert command in help_text


def test_cli_info_checkpoint_and_bad_input(tmp_path: Path) -> None:
    from napari_usema.io.checkpoint import save_checkpoint
    from napari_usema.io.metadata import CheckpointMetadata
    from napari_usema.model import build_model, preset

    config = preset("tiny")
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(config), CheckpointMetadata(config, provenance={"steps": 3}))
    run = [sys.executable, "-m", "napari_usema.cli.main", "info"]
    report = json.loads(subprocess.run([*run, str(path)], capture_output=True, text=True, check=True).stdout)
    assert report["metadata"]["provenance"] == {"steps": 3} and report["parameters"] > 0
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 3)
    result = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "not a .safetensors checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_readme_starts_with_the_two_commands_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [ci.split(f"{name}='", 1)[1].split("'\n", 1)[0] for name in ("INSTALL_COMMAND", "TEST_COMMAND")]
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines() == commands  # README's first two lines are CI's, in that order


def test_bundled_models_resolve_by_name_in_a_checkout() -> None:
    from napari_usema.io.bundled import BUNDLED, available_models, resolve_model, weights_dir

    assert weights_dir() == ROOT / "weights"
    assert available_models() == list(BUNDLED)
    for name in BUNDLED:
        assert resolve_model(name).is_file()
