"""Models that leave napari-usema: ONNX graphs (and, from them, BioImage.IO packages)."""
