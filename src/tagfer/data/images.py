"""Decode the image of a :class:`~tagfer.data.records.FaceRecord` as ``[H, W, 3]`` uint8 RGB."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tagfer.data.records import FaceRecord


class CorruptImageError(OSError):
    """An image file that cannot be decoded (empty, truncated, not an image); the message names it.

    A subclass of ``OSError``, like the ``FileNotFoundError`` of a missing file: ``except OSError``
    catches both.
    """


def load_image(record: FaceRecord) -> np.ndarray:
    """The record's image as a ``[H, W, 3]`` uint8 RGB array.

    Files are decoded with PIL, turned upright by their EXIF orientation tag, and converted to RGB
    (grey, palette, CMYK and alpha images alike; alpha is dropped). ``record.pixels`` (FER2013 rows)
    ``[H, W]`` grey is repeated into 3 channels. Raises :class:`CorruptImageError` for a zero-byte,
    truncated or undecodable file, ``FileNotFoundError`` for a missing one, and ``ValueError`` for a
    record with neither pixels nor a path.
    """
    if record.pixels is not None:
        pixels = np.asarray(record.pixels, dtype=np.uint8)
        if pixels.ndim == 2:
            return np.repeat(pixels[:, :, None], 3, axis=2)
        if pixels.ndim == 3 and pixels.shape[2] == 3:
            return pixels
        raise ValueError(f"record {record.id}: pixels must be [H, W] or [H, W, 3], got shape {pixels.shape}")
    if record.image_path is None:
        raise ValueError(f"record {record.id} has neither pixels nor an image_path")
    path = record.image_path
    if path.is_file() and path.stat().st_size == 0:
        raise CorruptImageError(f"{path}: empty (zero-byte) image file")
    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, SyntaxError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CorruptImageError(f"{path}: cannot decode image ({err})") from err
