"""Write a text file atomically: readers see the old content or the new one, never a part of it.

The text goes to a temporary file beside the target, which is then renamed over it (``os.replace``). The
temporary name carries the process id, so processes writing the same file at once (DDP ranks saving the
run's config) never write into one shared temporary file. (The AU cache's shards also fsync:
:func:`tagfer.au.shards.atomic_write_bytes`; whole directories: :mod:`tagfer.models.staging`.)
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
