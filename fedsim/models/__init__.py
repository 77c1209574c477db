"""Backbones, heads, pre-training and the feature cache."""
from fedsim.models import backbones, heads  # noqa: F401  (registers the backbones and heads)
