"""Evaluation: baselines and metrics computed over finished predictions."""
