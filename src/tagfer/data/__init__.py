"""Datasets: one reader per on-disk format, synthetic faces, transforms, and the FERDataModule."""

from tagfer.data.records import FaceRecord

__all__ = ["FaceRecord"]
