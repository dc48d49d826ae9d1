"""The bundled models (``weights/`` in the repository, ``napari_usema/weights`` in a wheel), by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BUNDLED = {
    "nuclei": "nuclei.safetensors",
    "polyps": "polyps.safetensors",
}


def weights_dir() -> Path:
    """The folder holding the bundled weights, for an installed wheel or a source checkout."""
    packaged = Path(str(resources.files("napari_usema"))) / "weights"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "weights"  # src/napari_usema/io -> repository root


def available_models() -> list[str]:
    """Names of the bundled models whose files are present."""
    folder = weights_dir()
    return [name for name, file in BUNDLED.items() if (folder / file).is_file()]


def resolve_model(name_or_path: str | Path) -> Path:
    """A bundled model's file for its name, else the path itself.

    Raises:
        FileNotFoundError: for an unknown name or a missing file, listing what exists.
    """
    text = str(name_or_path)
    if text in BUNDLED:
        path = weights_dir() / BUNDLED[text]
        if not path.is_file():
            raise FileNotFoundError(f"the bundled model {text!r} is not installed ({path} is missing)")
        return path
    path = Path(text).expanduser()
    if not path.exists():
        names = ", ".join(available_models()) or "none installed"
        raise FileNotFoundError(f"no model file {text!r}; give a checkpoint path or a bundled name ({names})")
    return path
