"""Experiment configs: one `get_config(arg)` per file; shared defaults in `common.py`."""
