"""Training: the one loop for every distribution strategy, the paper's stages, and fold runs on a
TFRecord build (a command's flags turned into a `RunSpec` and a `TrainConfig`)."""
