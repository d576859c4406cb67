"""advfit: robustness to adversarial examples against the degree of fitting."""

__version__ = "0.1.0"
