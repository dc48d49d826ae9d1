"""Training and fine-tuning: data, augmentation, losses, the loop, and torchrun support."""
