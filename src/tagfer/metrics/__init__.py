"""Metrics (torchmetrics): classification and grounding faithfulness."""
