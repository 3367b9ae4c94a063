"""Facial Action Units: detectors, the landmark-geometry estimate and its calibration, the AU cache
(built from records handed to it; this package reads no dataset). The AU vocabulary, regions and
evidence live in :mod:`tagfer.core`."""
