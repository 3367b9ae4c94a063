"""Facial Action Units: vocabulary and priors, landmark → region boxes, detectors, the AU cache."""

from tagfer.au.evidence import AUEvidence
from tagfer.au.vocabulary import AU_LIST, AU_NAMES, AU_REGION, EXPRESSION_PRIORS, REGIONS, canonical_au

__all__ = ["AUEvidence", "AU_LIST", "AU_NAMES", "AU_REGION", "EXPRESSION_PRIORS", "REGIONS", "canonical_au"]
