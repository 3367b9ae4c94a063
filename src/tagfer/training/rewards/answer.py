"""``answer``: is the predicted class the label?"""

from __future__ import annotations

from tagfer.core.classes import CLASS_INDEX
from tagfer.core.trace import ParsedTrace
from tagfer.training.rewards.base import RewardCallback


class AnswerReward(RewardCallback):
    """1 when the completion's single ``<answer>`` normalises to exactly the label, else 0.

    The answer goes through :func:`tagfer.core.classes.normalize_label` inside the parser: "Happy." counts
    as happiness, but an empty answer, "happy or sad", a list of every class or several ``<answer>``
    tags give no class and score 0 (no substring matching). Needs ``batch.label_name`` (canonical class
    names). No params. Range: {0, 1}.
    """

    name = "answer"
    value_range = (0.0, 1.0)
    required_keys = ("label_name",)

    def score(self, trace: ParsedTrace, label_name: str) -> float:
        if label_name not in CLASS_INDEX:
            raise ValueError(f"reward 'answer': label {label_name!r} is not a canonical class name {list(CLASS_INDEX)}")
        return 1.0 if trace.answer == label_name else 0.0
