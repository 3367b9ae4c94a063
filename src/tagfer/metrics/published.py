"""Published accuracies on the real benchmarks, to print beside a run's results in ``report.md``.

Numbers (%, each source's own test protocol) as collected in the project's method notes; the TAG paper
itself (cs.CV, 2026-02-21) publishes no numbers in its abstract or figures. Sources:

* "Facial-R1 table": the comparison table of Facial-R1 (AAAI 2026).
* "ExpLLM table": the results table of ExpLLM.
* "POSTER V2 README": the POSTER++ repository README.
* "APViT", "VTFF": the results of the respective papers.

Protocols the columns follow (what a run must match to be comparable):

* RAF-DB: overall accuracy on the 3,068 basic test images (7 classes).
* AffectNet-7 / AffectNet-8: accuracy on the balanced validation set (3,500 / 4,000 images).
* FERPlus: accuracy on FER2013Test (PrivateTest) with majority labels.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Column name → protocol description.
BENCHMARKS: dict[str, str] = {
    "RAF-DB": "overall accuracy, 3,068 test images, 7 classes",
    "AffectNet-7": "accuracy on the balanced validation set (3,500 images)",
    "AffectNet-8": "accuracy on the balanced validation set (4,000 images)",
    "FERPlus": "majority-label accuracy on FER2013Test (PrivateTest)",
}


@dataclass(frozen=True)
class PublishedResult:
    """One method's reported accuracies (%); None where the source reports none."""

    method: str
    source: str
    vision_only: bool
    accuracy: dict[str, float]


PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult("GPT-4o zero-shot", "Facial-R1 table", False, {"RAF-DB": 62.7, "AffectNet-8": 48.9}),
    PublishedResult("Qwen2.5-VL-7B zero-shot", "Facial-R1 table", False, {"RAF-DB": 34.3, "AffectNet-8": 32.6}),
    PublishedResult("EmoLA", "Facial-R1 table", False, {"RAF-DB": 92.1, "AffectNet-8": 39.7}),
    PublishedResult("ExpLLM", "ExpLLM table", False, {"RAF-DB": 91.03, "AffectNet-7": 65.93, "AffectNet-8": 62.86}),
    PublishedResult("Facial-R1", "Facial-R1 table", False, {"RAF-DB": 92.1, "AffectNet-8": 65.2}),
    PublishedResult("POSTER++", "POSTER V2 README", True, {"RAF-DB": 92.21, "AffectNet-7": 67.49, "AffectNet-8": 63.77}),
    PublishedResult("APViT", "APViT", True, {"RAF-DB": 91.98}),
    PublishedResult("FMAE", "Facial-R1 table", True, {"RAF-DB": 93.4, "AffectNet-8": 64.8}),
    PublishedResult("VTFF", "VTFF", True, {"RAF-DB": 88.14, "AffectNet-8": 61.85, "FERPlus": 88.81}),
)


def benchmark_column(dataset: str, num_classes: int) -> str | None:
    """The published column a test set of reader ``dataset`` with ``num_classes`` classes compares to.

    ``rafdb`` → RAF-DB (7 classes), ``ferplus`` → FERPlus, ``affectnet`` → AffectNet-7 or AffectNet-8;
    anything else (synthetic faces, your own folders, a class subset that matches no protocol) → None.
    """
    if dataset == "rafdb" and num_classes == 7:
        return "RAF-DB"
    if dataset == "ferplus" and num_classes == 8:
        return "FERPlus"
    if dataset == "affectnet" and num_classes in (7, 8):
        return f"AffectNet-{num_classes}"
    return None


def published_for(column: str) -> list[PublishedResult]:
    """The methods that report ``column``, best first."""
    if column not in BENCHMARKS:
        raise ValueError(f"unknown benchmark column {column!r}; expected one of {list(BENCHMARKS)}")
    rows = [r for r in PUBLISHED if column in r.accuracy]
    return sorted(rows, key=lambda r: -r.accuracy[column])
