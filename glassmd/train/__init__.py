"""Training: the trainer, evaluation metrics and the expert-feature ridge baseline."""
