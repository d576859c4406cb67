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


def test_lock_step_fit_is_scipys_fit_row_by_row():
    """All targets in one Nelder-Mead give SciPy's weibull_min.fit location for each,
    both for fits that converge and for fits that stop at fmin's 600 evaluations."""
    from scipy.optimize import fmin
    from scipy.stats import weibull_min

    from advfit.evaluation.weibull import start, weibull_locations, weibull_location_scipy

    rng = np.random.default_rng(5)
    stopped = converged = 0
    for n_batches in (20, 100, 500):
        pools = [rng.gamma(2.0, 0.7, 100), rng.random(100) * 1e-3, rng.lognormal(0, 2, 100),
                 np.r_[rng.random(99), 50.0], rng.gamma(5.0, 0.1, 100)]  # gradient norms
        maxima = np.stack([pool[rng.integers(0, 100, size=(n_batches, 10))].max(axis=1)
                           for pool in pools])
        ours = weibull_locations(maxima, 1.0)
        art = np.array([weibull_location_scipy(row, 1.0) for row in maxima])
        np.testing.assert_allclose(ours, art, rtol=1e-9)
        assert (np.abs(ours) <= 1.5 * maxima.max(axis=1)).all()  # L near the largest maximum
        for row in maxima:
            n_calls = fmin(weibull_min._penalized_nnlf, start(-row, 1.0), args=(-row,),
                           disp=0, full_output=True)[3]
            stopped, converged = stopped + (n_calls == 600), converged + (n_calls < 600)
    assert stopped >= 3 and converged >= 3  # both ends of fmin's loop are exercised


def test_penalised_likelihood_is_scipys_row_by_row():
    """nnlf_rows equals SciPy's penalised negative log-likelihood on every row, through
    both of its paths: all points inside the support, and rows with points below it,
    at its edge (kept when c = 1, penalised otherwise), or whose x**c overflows; with
    one workspace reused across calls of different sizes, as the fit does."""
    from scipy.stats import weibull_min

    from advfit.evaluation.weibull import Workspace, nnlf_rows

    rng = np.random.default_rng(11)
    data = -(rng.gamma(2.0, 0.7, size=(8, 50)))
    data[:, 1:] = np.maximum(data[:, 1:], -2.9)
    data[:, 0] = -3.0  # one point exactly at the edge for rows whose location is -3
    theta = np.array([[1.3, data[0].min() - 0.5, 0.8],  # all inside
                      [0.7, -3.0, 1.1],   # one point at the edge, c < 1
                      [1.0, -3.0, 1.1],   # at the edge with c = 1: kept
                      [2.5, -3.0, 0.9],   # at the edge, c > 1
                      [1.8, np.median(data[4]), 0.6],  # half the points below the support
                      [400.0, data[5].min() - 1.0, 1e-3],  # x**c overflows
                      [-1.0, -5.0, 1.0],  # non-positive shape
                      [1.2, -5.0, 0.0]])  # non-positive scale
    expected = np.array([weibull_min._penalized_nnlf(t, d) for t, d in zip(theta, data)])
    work = Workspace(*data.shape)
    for rows in (np.arange(8), np.array([4, 2, 5]), np.array([1])):
        ours = nnlf_rows(theta[rows], data[rows], work)
        np.testing.assert_allclose(ours, expected[rows], rtol=1e-12)
    assert np.isfinite(expected[:6]).all() and np.isinf(expected[6:]).all()
    # SciPy's penalty (~7e4 per point) hits the edge point when c != 1, not when c = 1
    assert expected[2] < 1e4 < expected[1] and expected[3] > 1e4


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


@pytest.mark.parametrize("order", [2, 1, np.inf])
def test_margin_norms_are_the_jacobians_row_differences(model, points, order):
    """The tiled backward pass gives |grad z_pred - grad z_j| for every j, 0 at j = pred."""
    import tensorflow as tf

    from advfit.evaluation.clever import _margin_norms_fn

    rng = np.random.default_rng(0)
    pool = np.clip(np.repeat(points[:4], 25, axis=0)
                   + rng.normal(0, 0.2, (100, *points.shape[1:])), 0, 1).astype(np.float32)
    pred = rng.integers(0, 10, size=100).astype(np.int32)  # any class, not only the predicted one
    x = tf.constant(pool)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
    jacobian = tape.batch_jacobian(logits, x).numpy().reshape(100, 10, -1)
    diff = jacobian[np.arange(100), pred][:, None] - jacobian
    expected = np.linalg.norm(diff, ord=order, axis=2)
    norms = np.asarray(_margin_norms_fn(model, 10, order)(pool, pred))
    assert norms.shape == (100, 10)
    assert (norms[np.arange(100), pred] == 0).all()
    np.testing.assert_allclose(norms, expected, rtol=1e-4, atol=1e-6 * expected.max())
    assert np.median(expected[expected > 0]) > 1e-3  # the gradients are not all vanishing


def test_scores_do_not_depend_on_how_points_are_batched(model, points, monkeypatch):
    from advfit.evaluation import clever

    params = {**SETTINGS, "nb_batches": 30}
    whole = clever_u_fast(model, points[:5], seed=1, **params)
    monkeypatch.setattr(clever, "FIT_GROUP", 2)  # the lock-step fits' rows are independent
    assert np.array_equal(clever_u_fast(model, points[:5], seed=1, **params), whole)
    monkeypatch.setattr(clever, "CALL_BUDGET", 1)  # one point per traced call
    one_by_one = clever_u_fast(model, points[:5], seed=1, **params)
    np.testing.assert_allclose(one_by_one, whole, rtol=1e-5)
