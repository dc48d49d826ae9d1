"""napari-usema: USEMA segmentation for microscopy and endoscopy, in napari and on the command line."""

__version__ = "0.1.0"
