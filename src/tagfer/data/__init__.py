"""Datasets: one reader per on-disk format, synthetic faces, transforms, and the FERDataModule."""

from tagfer.data.images import CorruptImageError, load_image
from tagfer.data.reader_base import DatasetLayoutError, ReadResult
from tagfer.data.readers import available_splits, read_dataset
from tagfer.data.records import FaceRecord

__all__ = [
    "CorruptImageError",
    "DatasetLayoutError",
    "FaceRecord",
    "ReadResult",
    "available_splits",
    "load_image",
    "read_dataset",
]
