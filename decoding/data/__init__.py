"""Datasets the engine trains and evaluates on."""

from decoding.data.fashion_mnist import CLASSES, DatasetNotFoundError, load_fashion_mnist

__all__ = ["CLASSES", "DatasetNotFoundError", "load_fashion_mnist"]
