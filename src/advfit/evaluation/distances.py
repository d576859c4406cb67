"""Distances between adversarial examples and their originals."""

from __future__ import annotations

import numpy as np

# "channels": the Euclidean norm over every value of the image (the usual
#   definition, the one the attacks bound).
# "pixels": the Euclidean norm over pixels of each pixel's root-mean-square
#   change across channels, i.e. the channel L2 divided by sqrt(channels).
#   It is what the papers' values suggest (FGSM at eps 0.3 on 32x32x3 gives
#   0.3*sqrt(1024) = 9.6, not 0.3*sqrt(3072) = 16.6); on grayscale both agree.
L2_CONVENTIONS = ("channels", "pixels")


def perturbation_norms(x_adv: np.ndarray, x_orig: np.ndarray,
                       l2_convention: str = "channels") -> dict[str, np.ndarray]:
    """Per-example L0 (pixels changed in any channel), L2 and L-infinity norms.

    Images are NHWC. L0 counts spatial positions, so its maximum is H*W.
    """
    if l2_convention not in L2_CONVENTIONS:
        raise ValueError(f"unknown l2_convention {l2_convention!r}; known: {L2_CONVENTIONS}")
    if x_adv.shape != x_orig.shape or x_adv.ndim != 4:
        raise ValueError(f"need two NHWC arrays of one shape, got {x_adv.shape} and {x_orig.shape}")
    delta = x_adv.astype(np.float64) - x_orig.astype(np.float64)
    flat = delta.reshape(len(delta), int(np.prod(delta.shape[1:])))  # also for 0 AEs
    l2 = np.sqrt(np.sum(flat**2, axis=1))
    if l2_convention == "pixels":
        l2 = l2 / np.sqrt(delta.shape[-1])
    return {
        "l0": np.count_nonzero(np.any(delta != 0, axis=-1), axis=(1, 2)),
        "l2": l2,
        "linf": np.abs(flat).max(axis=1, initial=0.0),
    }
