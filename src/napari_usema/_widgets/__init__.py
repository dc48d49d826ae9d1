"""napari front end: dock widgets that translate layers and widget values into engine calls."""
