"""advfit's CLEVER estimator against ART's clever_u on a real trained LeNet-5."""

import numpy as np
import pytest

from advfit.evaluation import metrics
from advfit.attacks.adversarial_sets import predict_labels
from advfit.evaluation.clever import ball_noise, clever_u_fast
from advfit.runtime.layout import snapshot_name

# Small but real: 20 points, pool 50 points, 100 maxima of 5 (ART: ~0.5 s a point).
SETTINGS = {"nb_batches": 100, "batch_size": 5, "pool_factor": 10, "radius": 5.0, "norm": 2}
N_POINTS = 20
# Seed-to-seed, either estimator moves its scores by ~3 % (median) at these
# settings; the two estimators' median relative difference stays below this.
AGREEMENT_BOUND = 0.08


@pytest.fixture(scope="module")
def model(trained_lenet):
    model, _, snapshot_dir = trained_lenet
    model.load_weights(snapshot_dir / snapshot_name(3))
    return model


@pytest.fixture(scope="module")
def points(model, digits):
    x, y = digits.take(digits.official_test[:60])
    return x[predict_labels(model, x) == y][:N_POINTS]


@pytest.fixture(scope="module")
def art_scores(model, points):
    return metrics.clever_u(model, points, backend="art", seed=0, **SETTINGS)


def _median_rel(a, b):
    return float(np.nanmedian(np.abs(a - b) / np.abs(b)))


def test_agrees_with_art_within_sampling_error(model, points, art_scores):
    fast = metrics.clever_u(model, points, seed=0, **SETTINGS)  # backend advfit by default
    assert len(points) == N_POINTS and np.isfinite(fast).all() and np.isfinite(art_scores).all()
    assert (fast > 0).all() and (fast <= SETTINGS["radius"]).all()
    assert _median_rel(fast, art_scores) <= AGREEMENT_BOUND
    # the scores spread over points, so agreement is not a constant matching a constant
    assert art_scores.max() > 2 * art_scores.min()


def test_one_target_class_only_is_detectably_different(model, points, art_scores):
    broken = clever_u_fast(model, points, seed=0, only_class=0, **SETTINGS)
    assert _median_rel(broken, art_scores) > 3 * AGREEMENT_BOUND


def test_score_depends_on_point_and_seed_only(model, points):
    params = {**SETTINGS, "nb_batches": 30, "norm": "inf", "radius": 0.5}
    x = points[:4]
    forward = clever_u_fast(model, x, seed=3, **params)
    backward = clever_u_fast(model, x[::-1], seed=3, **params)
    assert np.array_equal(forward, backward[::-1])
    assert not np.array_equal(forward, clever_u_fast(model, x, seed=4, **params))
    assert np.isfinite(forward).all() and (forward <= 0.5).all()


@pytest.mark.parametrize("norm", [1, 2, np.inf])
def test_ball_noise_is_uniform_in_the_ball(norm):
    rng = np.random.default_rng(0)
    dim, radius = 16, 2.0
    noise = ball_noise(rng, 20000, dim, radius, norm)
    norms = np.linalg.norm(noise, ord=norm, axis=1)
    assert norms.max() <= radius * (1 + 1e-12)
    # uniform in a d-ball: P(||v|| <= r R) = r^d, so the median norm is R 0.5^(1/d)
    assert np.median(norms) == pytest.approx(radius * 0.5 ** (1 / dim), rel=0.01)


def test_weibull_location_is_scipys_bit_for_bit():
    from advfit.evaluation.clever import weibull_location, weibull_location_scipy

    rng = np.random.default_rng(5)
    for n_batches in (20, 100, 500):
        pool = rng.gamma(2.0, 0.7, size=100)  # gradient norms of a pool
        maxima = pool[rng.integers(0, 100, size=(n_batches, 10))].max(axis=1)
        ours, art = weibull_location(maxima, 1.0), weibull_location_scipy(maxima, 1.0)
        assert ours == art and -ours <= 1.5 * maxima.max()  # L near the largest maximum


def test_traced_gradients_follow_reloaded_weights(trained_lenet, digits, points):
    """A metric job reloads each snapshot into one model: the cached trace must see them."""
    from advfit.models.architectures import build_model

    model, _, snapshot_dir = trained_lenet
    params = {**SETTINGS, "nb_batches": 30}
    x = points[:3]
    model.load_weights(snapshot_dir / snapshot_name(1))
    epoch1 = clever_u_fast(model, x, seed=0, **params)
    model.load_weights(snapshot_dir / snapshot_name(3))
    epoch3 = clever_u_fast(model, x, seed=0, **params)
    fresh = build_model("lenet5", digits.image_shape, 10)
    fresh.load_weights(snapshot_dir / snapshot_name(1))
    assert np.array_equal(clever_u_fast(fresh, x, seed=0, **params), epoch1)
    assert not np.array_equal(epoch1, epoch3)
