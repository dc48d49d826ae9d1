"""From an image to class probabilities and labels: channels, normalisation, resizing, tiles, devices."""
