"""Datasets: upload (validated, stored by sha256), list, get, delete."""
