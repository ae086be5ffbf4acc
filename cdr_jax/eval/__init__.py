"""Evaluation: metrics, baselines and classical predictors, scoring of every predictor."""
