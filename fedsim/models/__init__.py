"""Backbones, heads, pre-training and the feature cache."""
from fedsim.models import heads  # noqa: F401  (registers the heads)
