"""Write a directory atomically: build it under a hidden temporary name, then rename it into place."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(out_dir: str | os.PathLike, *, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``out_dir``; on success rename it to ``out_dir``.

    * ``overwrite=True``: an existing ``out_dir`` is replaced (the old one is renamed away first, then
      deleted), so readers see either the old or the new directory, never a mix.
    * ``overwrite=False``: when ``out_dir`` appeared meanwhile (another process built the same thing,
      e.g. a second DDP rank) and holds a finished model (``config.json``), that one is kept.

    On an exception nothing is published and the temporary directory is removed.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if overwrite and out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, out_dir)
            except OSError:
                if not (out_dir / "config.json").is_file():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
