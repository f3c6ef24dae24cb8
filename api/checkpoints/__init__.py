"""Checkpoints: list per job, select by budget, get, download."""
