"""Datasets and partitioners."""
