"""Decode the image of a :class:`~tagfer.core.records.FaceRecord` as ``[H, W, 3]`` uint8 RGB.

The decode boundary: whatever PIL raises while reading one file (``UnidentifiedImageError``, a
truncated stream's ``OSError``, ``SyntaxError``, ``DecompressionBombError`` for a file declaring more
than ``2 × PIL.Image.MAX_IMAGE_PIXELS`` = 178,956,970 pixels, ``ValueError``/``MemoryError`` from a
decoder) becomes a :class:`CorruptImageError` naming the file, so callers skip that one file; only a
missing file stays ``FileNotFoundError``.

Bounded decode (:func:`decode_image` with ``max_pixels``): a file of ``W × H > max_pixels`` pixels
is decoded at a working size ``w × h`` with ``w = floor(W / f)``, ``h = floor(H / f)``,
``f = sqrt(W·H / max_pixels)`` (so ``w·h ≤ max_pixels``). JPEGs are decoded reduced by the decoder
itself (``Image.draft``: 1/2, 1/4 or 1/8 scale, never below the working size), then box-filtered to
the working size; other formats are decoded whole and then box-filtered (peak memory about the whole
decode: 0.3 GB for 100 megapixels). A point ``(x, y)`` of the working image is ``(x · W / w, y · H / h)``
in the original (:attr:`DecodedImage.scale`). 16-bit grey images keep their contrast (``v >> 8``).
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps

from tagfer.core.records import FaceRecord

#: EXIF orientations that turn the stored image by 90° (width and height swap when made upright).
_TRANSPOSED = (5, 6, 7, 8)


class CorruptImageError(OSError):
    """An image file that cannot be decoded (empty, truncated, not an image, too large); the message names it.

    A subclass of ``OSError``, like the ``FileNotFoundError`` of a missing file: ``except OSError``
    catches both.
    """


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image, possibly reduced: ``pixels`` ``[h, w, 3]`` uint8 RGB of an upright file whose
    full size is ``original_size`` ``(W, H)``."""

    pixels: np.ndarray
    original_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        """``(w, h)`` of :attr:`pixels`."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def scale(self) -> tuple[float, float]:
        """``(W / w, H / h)``: multiply a working-image point by it to get original pixels (1.0 when not reduced)."""
        return self.original_size[0] / self.size[0], self.original_size[1] / self.size[1]


def working_size(size: tuple[int, int], max_pixels: int | None) -> tuple[int, int]:
    """``(w, h)`` to decode an image of ``size = (W, H)`` at: ``size`` itself when ``W·H ≤ max_pixels``
    (or no ceiling), else ``(max(1, floor(W/f)), max(1, floor(H/f)))`` with ``f = sqrt(W·H / max_pixels)``
    (``max_pixels ≥ 1``)."""
    width, height = size
    if max_pixels is None or width * height <= max_pixels:
        return width, height
    factor = math.sqrt(width * height / max_pixels)
    return max(1, math.floor(width / factor)), max(1, math.floor(height / factor))


def _pixels_array(record: FaceRecord) -> np.ndarray:
    pixels = np.asarray(record.pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return pixels
    raise ValueError(f"record {record.id}: pixels must be [H, W] or [H, W, 3], got shape {pixels.shape}")


def _header_upright_size(image: Image.Image) -> tuple[int, int]:
    """The stored ``(W, H)`` of an opened, not yet decoded file, swapped when the EXIF read with its header
    (JPEG's APP1; a PNG's eXIf chunk before the pixels) turns it by 90°. ``getexif()`` is not used: on a
    PNG it decodes the whole image."""
    width, height = image.size
    raw = image.info.get("exif")
    if not raw:
        return width, height
    exif = Image.Exif()
    exif.load(raw)
    return (height, width) if exif.get(ExifTags.Base.Orientation) in _TRANSPOSED else (width, height)


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grey image (PIL modes ``I;16*`` and ``I``, as 16-bit PNGs open) as 8-bit ``L``: ``v >> 8``
    of ``v`` clipped to 0..65535 (PIL's own ``convert`` clips at 255, which whitens the image); others unchanged."""
    if image.mode != "I" and not image.mode.startswith("I;16"):
        return image
    values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
    return Image.fromarray(values.astype(np.uint8))


@contextmanager
def _decode_boundary(path, what: str):
    """Turn any exception inside (but ``FileNotFoundError``) into ``CorruptImageError("<path>: cannot <what> (<type>: <message>)")``.

    PIL's ``DecompressionBombWarning`` (more than ``MAX_IMAGE_PIXELS``) is silenced inside: callers
    bound the decoded size themselves, and files over PIL's hard limit raise.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except FileNotFoundError:
        raise
    except Exception as err:  # the decode boundary: any decoder failure is this file's problem
        raise CorruptImageError(f"{path}: cannot {what} ({type(err).__name__}: {err})") from err


def _decode_file(path, max_pixels: int | None) -> DecodedImage:
    """PIL's part of :func:`decode_image` (module docstring); raises what PIL raises.

    Sizes are worked out in the stored orientation (``working_size`` is symmetric in W and H) and turned
    when ``exif_transpose`` turned the image.
    """
    with Image.open(path) as image:
        stored = image.size
        target = working_size(stored, max_pixels)
        if target != stored:
            image.draft(None, target)  # JPEG: the decoder reduces 2×, 4× or 8×; other formats: no-op
        image.load()
        decoded = image.size
        ImageOps.exif_transpose(image, in_place=True)  # no copy: a whole 100-MP decode is 0.3 GB
        upright = _eight_bit(image)
        if upright.mode != "RGB":
            upright = upright.convert("RGB")
        turned = upright.size != decoded
        if turned:
            stored, target = stored[::-1], target[::-1]
        if upright.size != target:
            upright = upright.resize(target, Image.Resampling.BOX)
        return DecodedImage(np.asarray(upright, dtype=np.uint8), stored)


def decode_image(record: FaceRecord, max_pixels: int | None = None) -> DecodedImage:
    """The record's image, reduced to at most ``max_pixels`` pixels (module docstring; None: full size).

    Files are decoded with PIL, turned upright by their EXIF orientation tag, and converted to RGB
    (grey, palette, CMYK, 16-bit and alpha images alike; alpha is dropped; an animated image gives its
    first frame). ``record.pixels`` (FER2013 rows) ``[H, W]`` grey is repeated into 3 channels and never
    reduced. Raises :class:`CorruptImageError` naming the file for a zero-byte, truncated, undecodable
    or too large file (whatever the decoder raised, its type in the message), ``FileNotFoundError`` for
    a missing one, and ``ValueError`` for a record with neither pixels nor a path.
    """
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be ≥ 1 or None, got {max_pixels}")
    if record.pixels is not None:
        pixels = _pixels_array(record)
        return DecodedImage(pixels, (int(pixels.shape[1]), int(pixels.shape[0])))
    if record.image_path is None:
        raise ValueError(f"record {record.id} has neither pixels nor an image_path")
    path = record.image_path
    if path.is_file() and path.stat().st_size == 0:
        raise CorruptImageError(f"{path}: empty (zero-byte) image file")
    with _decode_boundary(path, "decode image"):
        return _decode_file(path, max_pixels)


def reduce_pixels(pixels: np.ndarray, max_pixels: int | None) -> DecodedImage:
    """An already decoded ``[H, W, 3]`` image shrunk (box filter) to :func:`working_size` for detection,
    as a :class:`DecodedImage` whose ``original_size`` is ``(W, H)``; unchanged when it fits."""
    size = (int(pixels.shape[1]), int(pixels.shape[0]))
    target = working_size(size, max_pixels)
    if target == size:
        return DecodedImage(pixels, size)
    return DecodedImage(np.asarray(Image.fromarray(pixels).resize(target, Image.Resampling.BOX)), size)


def load_image(record: FaceRecord) -> np.ndarray:
    """The record's image at full size as a ``[H, W, 3]`` uint8 RGB array (:func:`decode_image`)."""
    return decode_image(record).pixels


def image_size(record: FaceRecord) -> tuple[int, int]:
    """``(W, H)`` of the record's upright image (EXIF orientation applied), reading only the file header.

    Raises :class:`CorruptImageError` naming the file when its header cannot be read.
    """
    if record.pixels is not None:
        return int(record.pixels.shape[1]), int(record.pixels.shape[0])
    with _decode_boundary(record.image_path, "read the image header"), Image.open(record.image_path) as image:
        return _header_upright_size(image)
