"""AU sets shared by the AU rewards: the detector's active set and the F1 between two sets."""

from __future__ import annotations

from collections.abc import Collection, Mapping


def active_aus(au_prob: Mapping[str, float], threshold: float, top_k: int | None = None) -> list[str]:
    """AUs with probability ≥ ``threshold``, strongest first (ties by name), the first ``top_k`` when given.

    The same order as :meth:`tagfer.core.evidence.AUEvidence.top_k`, so a reward can score against
    exactly the AUs the trace builder offered.
    """
    active = sorted(((au, p) for au, p in au_prob.items() if p >= threshold), key=lambda kv: (-kv[1], kv[0]))
    return [au for au, _ in (active if top_k is None else active[:top_k])]


def set_f1(predicted: Collection[str], reference: Collection[str]) -> float:
    """F1 = 2|P ∩ R| / (|P| + |R|); 1.0 when both sets are empty (nothing to find, nothing claimed)."""
    predicted, reference = set(predicted), set(reference)
    if not predicted and not reference:
        return 1.0
    return 2.0 * len(predicted & reference) / (len(predicted) + len(reference))
