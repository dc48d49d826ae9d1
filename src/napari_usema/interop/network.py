"""The network as other tools build it from a package: plain keyword arguments in, ``USEMA`` out.

A BioImage.IO package's ``pytorch_state_dict`` weights name this function as their architecture
(``import_from: napari_usema.interop.network``, ``callable: usema_network``), with the checkpoint's
config as keyword arguments; the runner then loads the state dict into what it returns.
"""

from __future__ import annotations

from typing import Any

from ..model.config import USEMAConfig
from ..model.unet import USEMA


def usema_network(**config: Any) -> USEMA:
    """``USEMA(USEMAConfig(**config))``: ``config`` as ``USEMAConfig.to_dict()`` writes it."""
    return USEMA(USEMAConfig(**config)).eval()
