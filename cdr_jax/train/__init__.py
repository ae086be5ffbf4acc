"""Training: device state, the pure step, the one loop for one or many models, checkpoints."""
