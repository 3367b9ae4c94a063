"""Training steps skipped for a non-finite reward, loss or gradient: one bookkeeping for SFT and GRPO.

A skipped step changes no weight and no optimizer state. It increments ``skipped_steps`` (logged and
printed); ``max_consecutive_skips`` skips in a row stop the run with :class:`NonFiniteStepError`, which
names the last good checkpoint. The decision to skip is taken by every rank together
(``strategy.reduce_boolean_decision``): under DDP and FSDP2 a rank that skipped while the others went on
would leave them waiting forever in the next collective.
"""

from __future__ import annotations


class NonFiniteStepError(RuntimeError):
    """Too many consecutive steps had a non-finite reward, loss or gradient."""


class SkipsNonFiniteSteps:
    """Mixin for a LightningModule with ``self.max_consecutive_skips``, ``self.skipped_steps`` and
    ``self.consecutive_skips``; the stage sets ``STAGE`` (its name in messages), ``SKIP_METRIC`` (the
    logged key) and ``SKIP_HINT`` (what to try when the run stops)."""

    STAGE: str
    SKIP_METRIC: str
    SKIP_HINT: str

    def _skip(self, reason: str) -> None:
        """Count a skipped step; raise :class:`NonFiniteStepError` after too many in a row."""
        self.skipped_steps += 1
        self.consecutive_skips += 1
        self.log(self.SKIP_METRIC, float(self.skipped_steps))
        self.print(f"{self.STAGE} step {self.global_step} skipped: {reason} ({self.consecutive_skips} in a row)")
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise NonFiniteStepError(
                f"{self.consecutive_skips} consecutive {self.STAGE} steps had a {reason}; stopping. The last good checkpoint is "
                f"{self.trainer.checkpoint_callback.last_model_path or '(none yet)'}; {self.SKIP_HINT}"
            )

    def _all_ranks(self, decision: bool) -> bool:
        """``decision`` on every rank (a logical AND over the data-parallel world)."""
        return self.trainer.strategy.reduce_boolean_decision(bool(decision), all=True)
