"""Datasets and partitioners."""
from fedsim.data import datasets, partition  # noqa: F401  (registers the loaders and partitioners)
