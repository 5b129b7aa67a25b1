"""Model: config, builder, distributed training loop, checkpoints, evaluation and export."""
