"""What every dataset reader returns (:class:`ReadResult`) and raises (:class:`DatasetLayoutError`).

A reader module (``rafdb``, ``ferplus``, ``affectnet``, ``imagefolder``, ``synthetic``) provides

* ``NAME`` — the registry key (``DatasetSpec.name``);
* ``OPTIONS`` — the ``DatasetSpec`` fields it reads besides ``root`` and ``split``;
* ``LAYOUT`` — a short description of the expected files, quoted in every layout error;
* ``read(root: Path, split: str, **options) -> ReadResult`` (which states whether the split's images are
  whole photos or face crops: :attr:`ReadResult.whole_photos`) and
  ``splits(root: Path, **options) -> list[str]``.

Bad input is never silently dropped: a missing root or label file, or a malformed row, raises
:class:`DatasetLayoutError` naming the file (and line) and the expected layout. Only the skips each
reader documents (e.g. FERPlus not-a-face rows, AffectNet rows naming missing images) are counted in
:attr:`ReadResult.skipped`, with a few examples each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tagfer.core.config import ConfigError
from tagfer.core.records import FaceRecord

#: Examples kept per skip reason (``ReadResult.skipped_examples``).
MAX_SKIP_EXAMPLES = 5

#: Skip reasons that mean the copy on disk is damaged (not a protocol rule): errors under ``strict``.
DAMAGE_REASONS = ("missing_image", "duplicate_id")


class DatasetLayoutError(ValueError):
    """A dataset on disk does not have the expected layout or contents (the message says where and what)."""


@dataclass
class ReadResult:
    """The records of one dataset split and what was left out on the way.

    Attributes:
        whole_photos: the images are whole photos in which the face still has to be found (AffectNet's
            2017 csv layout, RAF-DB ``original``, an image folder, synthetic ``pose: random``), not face
            crops (RAF-DB ``aligned``, FERPlus, AffectNet's npy release, synthetic ``pose: aligned``).
            Each reader states it; ``data.face_crop.source: auto`` crops whole photos only
            (:mod:`tagfer.data.face_crop`).
        records: the usable records, in file order.
        skipped: reason → number of rows/images left out.
        skipped_examples: reason → up to :data:`MAX_SKIP_EXAMPLES` examples (``"id (file line N)"``).
        notes: reader facts worth logging (e.g. FERPlus ``label_source`` and ``label_mode``).
    """

    whole_photos: bool
    records: list[FaceRecord] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def skip(self, reason: str, example: str) -> None:
        """Count one left-out row under ``reason`` and keep ``example`` if there is room."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        examples = self.skipped_examples.setdefault(reason, [])
        if len(examples) < MAX_SKIP_EXAMPLES:
            examples.append(example)


def require_dir(path: Path, what: str, layout: str) -> Path:
    """``path`` if it is a directory, else :class:`DatasetLayoutError` naming it and the expected layout."""
    if not path.is_dir():
        raise DatasetLayoutError(f"{what}: directory {path} does not exist; expected layout: {layout}")
    return path


def require_file(path: Path, what: str, layout: str) -> Path:
    """``path`` if it is a file, else :class:`DatasetLayoutError` naming it and the expected layout."""
    if not path.is_file():
        raise DatasetLayoutError(f"{what}: file {path} does not exist; expected layout: {layout}")
    return path


def check_choice(option: str, value, allowed: tuple) -> None:
    """Raise :class:`~tagfer.core.config.ConfigError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{option}={value!r} is not one of {list(allowed)}")


def check_split(reader: str, split: str, available: tuple[str, ...], hint: str = "") -> None:
    """Raise :class:`~tagfer.core.config.ConfigError` when a dataset has no such split."""
    if split not in available:
        raise ConfigError(f"{reader} has no split {split!r}; its splits are {list(available)}{hint}")
