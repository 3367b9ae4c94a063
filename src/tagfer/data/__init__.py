"""Datasets: one reader per on-disk format, images, synthetic faces, transforms, face crops, trace files."""

from tagfer.data.images import CorruptImageError, load_image
from tagfer.data.reader_base import DatasetLayoutError, ReadResult
from tagfer.data.readers import available_splits, read_dataset

__all__ = [
    "CorruptImageError",
    "DatasetLayoutError",
    "ReadResult",
    "available_splits",
    "load_image",
    "read_dataset",
]
