"""``GRPOBatch``: the typed record of one GRPO step's completions, what every reward callback reads.

Like torchtune's ``Trajectory``: one field per quantity, each a tuple with one entry per completion
(``N = B·G`` rows, group-major: the ``G`` completions of a prompt are adjacent). Each completion is parsed
once, here (:func:`tagfer.core.trace.parse_trace`, without a ``<think>`` requirement: the format
reward applies its own), and every reward reads the same :class:`~tagfer.core.trace.ParsedTrace`.

Fields (``None``: not known for this batch; a reward that needs it raises a KeyError naming it):

* ``text``: the decoded completion; ``trace``: its parse;
* ``id``: sample id; ``label_id``: index of the true class in the collator's class list
  (:data:`tagfer.core.classes.CLASS_NAMES` order); ``label_name``: its canonical class name;
* ``au_prob``: dict AU → detector probability;
* ``au_box``: dict AU → ``(x1, y1, x2, y2)`` in the model family's coordinate space (the space of the
  completion's boxes); ``image_extent``: ``(W, H)`` of that space;
* ``completion_length``: token count of each completion (EOS included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from tagfer.core.trace import Box, ParsedTrace, parse_trace

#: The collator's per-sample ``meta`` keys a batch takes (each repeated ``G`` times).
SAMPLE_FIELDS = ("id", "label_id", "label_name", "au_prob", "au_box", "image_extent")


@dataclass(frozen=True)
class GRPOBatch:
    """The completions of one step with their parses and what the rewards know about their samples."""

    text: tuple[str, ...]
    trace: tuple[ParsedTrace, ...]
    id: tuple[str, ...] | None = None
    label_id: tuple[int, ...] | None = None
    label_name: tuple[str, ...] | None = None
    au_prob: tuple[Mapping[str, float], ...] | None = None
    au_box: tuple[Mapping[str, Box], ...] | None = None
    image_extent: tuple[tuple[float, float], ...] | None = None
    completion_length: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        bad = [type(text).__name__ for text in self.text if not isinstance(text, str)]
        if bad:
            raise TypeError(f"GRPOBatch.text holds {bad[0]}, expected str")
        for field in fields(self):
            column = getattr(self, field.name)
            if column is not None and len(column) != len(self.text):
                raise ValueError(f"batch.{field.name} has {len(column)} entries for {len(self.text)} completions")

    def __len__(self) -> int:
        return len(self.text)

    @classmethod
    def of(cls, texts: Sequence[str], **columns: Sequence | None) -> GRPOBatch:
        """Parse each of ``texts`` once; ``columns`` are the other fields (one entry per completion)."""
        texts = tuple(texts)
        return cls(
            text=texts,
            trace=tuple(parse_trace(text) for text in texts),
            **{key: None if column is None else tuple(column) for key, column in columns.items()},
        )

    @classmethod
    def from_samples(
        cls, meta: Mapping[str, Sequence], texts: Sequence[str], completion_lengths: Sequence[int], group_size: int
    ) -> GRPOBatch:
        """The batch of ``B`` prompts' collated ``meta`` (one entry per prompt) and their ``B·G`` completions.

        Each per-sample entry is repeated ``group_size`` times in a row, the rollout's row order.
        """
        samples = len(meta["id"])
        if len(texts) != samples * group_size:
            raise ValueError(f"{len(texts)} completions for {samples} prompts × G={group_size}")
        repeated = {key: [value for value in meta[key] for _ in range(group_size)] for key in SAMPLE_FIELDS}
        return cls.of(texts, completion_length=[int(n) for n in completion_lengths], **repeated)
