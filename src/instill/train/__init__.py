"""Supervised fine-tuning: the loss, the loop, checkpoints and metric logging."""
