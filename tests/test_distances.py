"""Perturbation norms on hand-made arrays."""

import numpy as np
import pytest

from advfit.evaluation.distances import perturbation_norms


def test_grayscale_norms():
    orig = np.zeros((2, 3, 3, 1), np.float32)
    adv = orig.copy()
    adv[0, 0, 0, 0] = 0.3
    adv[0, 2, 1, 0] = -0.4
    adv[1] = 0.1
    norms = perturbation_norms(adv, orig)
    assert norms["l0"].tolist() == [2, 9]
    assert norms["l2"] == pytest.approx([0.5, 0.3])
    assert norms["linf"] == pytest.approx([0.4, 0.1])
    # one channel: both L2 conventions agree
    assert perturbation_norms(adv, orig, "pixels")["l2"] == pytest.approx([0.5, 0.3])


def test_colour_l0_counts_pixels_and_l2_conventions():
    orig = np.full((1, 32, 32, 3), 0.5, np.float32)
    adv = orig + 0.3 * np.sign(np.random.default_rng(0).standard_normal(orig.shape))
    adv = adv.astype(np.float32)
    adv[0, 0, 0, 1:] = orig[0, 0, 0, 1:]  # one channel changed: still one pixel
    adv[0, 0, 1, :] = orig[0, 0, 1, :]  # unchanged pixel
    norms = perturbation_norms(adv, orig, "channels")
    assert norms["l0"][0] == 1024 - 1
    expected_sq = 0.09 * (3072 - 2 - 3)
    assert norms["l2"][0] == pytest.approx(np.sqrt(expected_sq), rel=1e-5)
    pixels = perturbation_norms(adv, orig, "pixels")["l2"][0]
    assert pixels == pytest.approx(np.sqrt(expected_sq / 3), rel=1e-5)  # ~ 0.3*sqrt(1024)
    assert norms["linf"][0] == pytest.approx(0.3, rel=1e-5)


def test_bad_inputs_are_refused():
    x = np.zeros((1, 2, 2, 1), np.float32)
    with pytest.raises(ValueError, match="l2_convention"):
        perturbation_norms(x, x, "manhattan")
    with pytest.raises(ValueError, match="NHWC"):
        perturbation_norms(x, np.zeros((1, 2, 2, 3), np.float32))


def test_an_empty_adversarial_set_has_empty_norms():
    x = np.zeros((0, 8, 8, 1), np.float32)
    norms = perturbation_norms(x, x)
    assert all(len(v) == 0 for v in norms.values())
