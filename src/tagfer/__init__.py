"""tagfer: TAG — Thinking with Action Unit Grounding for facial expression recognition.

Stages (each a file on disk the next one reads): dataset readers → AU detector + AU cache →
AU-grounded reasoning traces → SFT (``SFTModule``) → GRPO (``GRPOModule``) → evaluation.
"""

__version__ = "0.1.0"
