"""Datasets and batching. Imports no model code."""

from vaekit.data.registry import describe_builtins, load_dataset
from vaekit.data.splits import DatasetSplits, ImageSet

__all__ = ["DatasetSplits", "ImageSet", "describe_builtins", "load_dataset"]
