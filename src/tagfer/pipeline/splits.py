"""One run's view of its datasets: each split read once, each AU cache opened and verified once.

A run asks for a dataset split several times: the DataModule's ``prepare_data`` builds the AU caches of
every spec, ``setup`` joins the records with their evidence, a template-trace build reads the same
records again. :class:`SplitReader` reads the whole split of a spec once
(:func:`tagfer.data.readers.read_full_split`), hands those records to the AU cache
(:func:`tagfer.au.build.ensure_au_cache`: built when missing, opened and checksum-verified once), and
derives each spec's own records (``classes``, ``limit``) from the same read
(:func:`tagfer.data.readers.select_records`).

Keys: a split is ``(reader, root, split, reader options)``; a cache is its directory
(:func:`tagfer.au.cache.default_cache_dir`) and the split (a cache holds several splits, each added when
first asked for). One reader serves one run (one process); a dataset changed
on disk while it lives is not seen again.
"""

from __future__ import annotations

from tagfer.au.build import ensure_au_cache
from tagfer.au.cache import AUCache, default_cache_dir
from tagfer.data.reader_base import ReadResult
from tagfer.data.readers import read_full_split, reader, select_records


class SplitReader:
    """Reads dataset splits and opens their AU caches, each once (see the module docstring).

    Args:
        au_cfg: the run's ``au`` section (detector, box mode, cache directory, quality filter).
        progress: show the AU-cache build progress bar.
    """

    def __init__(self, au_cfg, *, progress: bool = True):
        self.au_cfg = au_cfg
        self.progress = progress
        self._splits: dict[tuple, ReadResult] = {}
        self._caches: dict[tuple[str, str], AUCache] = {}

    @staticmethod
    def split_key(spec) -> tuple:
        """What identifies the records of a whole split: reader, root, split and the reader's options."""
        options = tuple((name, getattr(spec, name)) for name in reader(spec.name).OPTIONS)
        return (spec.name, str(spec.root), spec.split, options)

    def full(self, spec) -> ReadResult:
        """The whole split ``spec`` names (read on first use; callers must not change it)."""
        key = self.split_key(spec)
        if key not in self._splits:
            self._splits[key] = read_full_split(spec)
        return self._splits[key]

    def read(self, spec, *, strict: bool = False) -> ReadResult:
        """The records ``spec`` selects, as ``read_dataset(spec, strict=strict)`` returns them."""
        return select_records(self.full(spec), spec, strict=strict)

    def au_cache(self, spec) -> AUCache:
        """The AU cache of the split ``spec`` names, built from its records when missing, opened and verified once."""
        key = (str(default_cache_dir(spec, self.au_cfg)), spec.split)
        if key not in self._caches:
            self._caches[key] = ensure_au_cache(spec, self.au_cfg, list(self.full(spec).records), progress=self.progress)
        return self._caches[key]
