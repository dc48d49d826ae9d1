"""Files in and out: images with their axes, checkpoints and their metadata, the bundled models."""
