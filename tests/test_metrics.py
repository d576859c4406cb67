"""Robustness metrics on a real trained LeNet-5, checked against ART and against TensorFlow."""

import inspect
import logging

import numpy as np
import pytest

from advfit.evaluation import metrics
from advfit.attacks.adversarial_sets import predict_labels
from advfit.attacks import art_classifier, cw_l2, fgsm
from advfit.evaluation.metrics import METRIC_DEFAULTS, METRIC_PARAMS, METRICS
from advfit.runtime.layout import snapshot_name

N_CLEVER = 7  # with the fixture's model ART's fit diverges at point 6, seed 0


@pytest.fixture(scope="module")
def model(trained_lenet):
    model, _, snapshot_dir = trained_lenet
    model.load_weights(snapshot_dir / snapshot_name(3))
    return model


@pytest.fixture(scope="module")
def sample(digits):
    """A fixed sample of test points, misclassified ones included (as in the workflow)."""
    return digits.take(digits.official_test[:100])


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def clever_run(model, sample):
    """CLEVER scores of the first points and what clever_u logged meanwhile."""
    recorder, log = Recorder(), logging.getLogger("advfit")
    level = log.level
    log.addHandler(recorder)
    log.setLevel(logging.INFO)
    try:
        scores = metrics.clever_u_art(model, sample[0][:N_CLEVER], seed=0)
    finally:
        log.removeHandler(recorder)
        log.setLevel(level)
    return scores, recorder.messages


@pytest.fixture(scope="module")
def clever_scores(clever_run):
    return clever_run[0]


@pytest.mark.parametrize("name", sorted(METRICS))
def test_param_specs_match_the_signatures(name):
    signature = inspect.signature(METRICS[name])
    keywords = {n: p.default for n, p in signature.parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "seed"}
    assert keywords == METRIC_DEFAULTS[name]
    assert set(keywords) == set(METRIC_PARAMS[name])


# --- loss sensitivity -------------------------------------------------------------

def test_loss_sensitivity_is_the_gradient_norm_of_each_point(model, sample):
    import tensorflow as tf

    x, y = sample
    values = metrics.loss_sensitivity(model, x, y, batch_size=32)
    assert values.shape == (len(x),) and np.all(np.isfinite(values)) and np.all(values >= 0)
    assert values.max() > 1.0 and np.median(values) > 0  # misclassified points weigh heavily

    # independently: one point at a time, plain GradientTape on the cross-entropy
    for i in (0, 7, 42, 99):
        point = tf.constant(x[i:i + 1])
        with tf.GradientTape() as tape:
            tape.watch(point)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y[i:i + 1], logits=model(point, training=False))
        expected = np.linalg.norm(tape.gradient(loss, point).numpy())
        assert values[i] == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_loss_sensitivity_mean_is_arts_and_arts_default_loss_shrinks_it(model, sample):
    import keras
    from art.estimators.classification import TensorFlowV2Classifier
    from art.metrics import loss_sensitivity

    x, y = sample
    onehot = np.eye(10, dtype=np.float32)[y]
    ours = metrics.loss_sensitivity(model, x, y)
    assert loss_sensitivity(art_classifier(model), x, onehot) == pytest.approx(ours.mean(),
                                                                                 rel=1e-5)
    # with Keras' default loss (mean over the batch) ART's value is 1/n of the true one
    mean_loss = TensorFlowV2Classifier(
        model, nb_classes=10, input_shape=(8, 8, 1), clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert loss_sensitivity(mean_loss, x, onehot) == pytest.approx(ours.mean() / len(x),
                                                                   rel=1e-5)


# --- empirical robustness -------------------------------------------------------------

def test_empirical_robustness_is_the_first_fgsm_step_that_flips(model, sample):
    x, _ = sample
    values = metrics.empirical_robustness(model, x, eps=0.3, eps_step=0.1)
    flipped = np.isfinite(values)
    assert values.shape == (len(x),) and flipped.mean() > 0.9
    assert np.all(values[flipped] > 0)
    # L-inf FGSM on the grid 0.1, 0.2, 0.3: ||delta|| / ||x|| = k * 0.1 / max(x)
    steps = values[flipped] * x[flipped].reshape(flipped.sum(), -1).max(axis=1) / 0.1
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)
    assert set(np.round(steps).astype(int)) == {1, 2, 3}

    # independently with cleverhans' FGSM at the model's own prediction:
    # step k flips the prediction, step k - 1 does not
    predicted = predict_labels(model, x)
    for k in (1, 2, 3):
        chosen = np.flatnonzero(np.isclose(steps, k))
        points = np.flatnonzero(flipped)[chosen]
        at_k = fgsm(model, x[points], predicted[points], eps=0.1 * k)
        assert np.all(predict_labels(model, at_k) != predicted[points])
        if k > 1:
            below = fgsm(model, x[points], predicted[points], eps=0.1 * (k - 1))
            assert np.all(predict_labels(model, below) == predicted[points])


def test_empirical_robustness_matches_art_and_arts_default_skips_its_last_step(model, sample):
    from art.metrics import empirical_robustness

    x, _ = sample
    classifier = art_classifier(model)
    ours = metrics.empirical_robustness(model, x, eps=0.3, eps_step=0.1)
    grid = {"eps": 0.35, "eps_step": 0.1}  # what _fgsm_grid_bound hands ART
    assert empirical_robustness(classifier, x, "fgsm", grid) == pytest.approx(np.nanmean(ours),
                                                                              rel=1e-6)
    # ART's own default (eps 0.3, step 0.1) stops after 0.2: 0.1 + 0.1 + 0.1 > 0.3
    only_two = metrics.empirical_robustness(model, x, eps=0.2, eps_step=0.1)
    assert empirical_robustness(classifier, x, "fgsm", {}) == pytest.approx(
        np.nanmean(only_two), rel=1e-6)
    assert np.isfinite(ours).sum() > np.isfinite(only_two).sum()


def test_empirical_robustness_l2(model, sample):
    x, _ = sample
    values = metrics.empirical_robustness(model, x, eps=3.0, eps_step=0.25, norm=2)
    flipped = np.isfinite(values)
    assert flipped.mean() > 0.9
    size = values[flipped] * np.linalg.norm(x[flipped].reshape(flipped.sum(), -1), axis=1)
    # an L2 step of k * 0.25, which clipping to [0, 1] can only shorten
    assert np.all(size > 0) and np.all(size <= 3.0 + 1e-5)
    linf = metrics.empirical_robustness(model, x, eps=0.3, eps_step=0.1)
    assert not np.allclose(values[flipped], linf[flipped], equal_nan=True)


# --- CLEVER ---------------------------------------------------------------------------------

def test_clever_crashes_with_arts_stock_classifier(model, sample):
    from art.metrics import clever_u

    with pytest.raises(TypeError, match="not iterable"):
        clever_u(art_classifier(model, stock=True), sample[0][0], nb_batches=5, batch_size=2,
                 radius=5.0, norm=2, verbose=False)


def test_clever_matches_arts_clever_u_with_the_same_seed(model, sample, clever_run):
    from art.metrics import clever_u

    clever_scores, messages = clever_run
    x = sample[0][:N_CLEVER]
    classifier = art_classifier(model)
    assert np.all(np.isfinite(clever_scores))
    assert np.all(clever_scores > 1e-2) and np.all(clever_scores <= 5.0)
    art_diverged = 0
    for i, point in enumerate(x):
        with metrics.numpy_seed(0):
            art_score = clever_u(classifier, point, nb_batches=500, batch_size=10, radius=5.0,
                                 norm=2, verbose=False)
        if art_score > 1e-3:
            assert clever_scores[i] == art_score  # same calls, same draws: exactly
        else:
            # ART's Weibull fit diverged (score ~1e-7); ours refitted that target
            art_diverged += 1
            assert clever_scores[i] > 1e-2
    refitted = [m for m in messages if "diverged Weibull fits refitted" in m]
    assert bool(refitted) == (art_diverged > 0)
    assert any(m.startswith(f"clever_u: {N_CLEVER}/{N_CLEVER} points") for m in messages)


def test_clever_is_reproducible_per_point_and_leaves_numpy_alone(model, sample, clever_scores):
    x = sample[0][:N_CLEVER]
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    reversed_scores = metrics.clever_u_art(model, x[[2, 1]], seed=0)
    assert np.array_equal(np.random.get_state()[1], state)
    assert np.array_equal(reversed_scores, clever_scores[[2, 1]])
    assert metrics.clever_u_art(model, x[[2]], seed=1)[0] != reversed_scores[0]


def test_clever_mostly_stays_below_the_perturbation_cw_finds(model, sample, clever_scores):
    """CLEVER *estimates* a lower bound on the minimal L2 perturbation (an extreme-value
    fit on sampled gradients, not a certificate); CW finds an upper bound. As a
    statistical statement: on most points (here at least all but one of 7) the
    estimate is below CW's distance, and the median ratio is well below 1."""
    x, y = sample[0][:N_CLEVER], sample[1][:N_CLEVER]
    predicted = predict_labels(model, x)
    x_adv = cw_l2(model, x, predicted)
    found = predict_labels(model, x_adv) != predicted
    distance = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)
    assert found.sum() >= N_CLEVER - 1
    ratio = clever_scores[found] / distance[found]
    tolerance = 1  # points where the estimate may exceed the upper bound
    assert np.sum(ratio > 1) <= tolerance, ratio
    assert np.median(ratio) < 0.9, ratio
    # and both rank the points alike: robust points score high on both
    assert np.corrcoef(clever_scores[found], distance[found])[0, 1] > 0.7


def test_fit_diverged_flags_only_absurd_lipschitz_estimates():
    # margin 9, sampled gradient norms up to 20: a fit giving L ~ 20 is fine
    assert not metrics.fit_diverged(9 / 21.0, 9.0, 20.0, radius=5.0)
    assert not metrics.fit_diverged(9 / 30.0, 9.0, 20.0, radius=5.0)
    # the divergence seen in practice: shape and location ~1e8, score ~1e-7
    assert metrics.fit_diverged(9 / 9.6e7, 9.0, 20.0, radius=5.0)
    assert metrics.fit_diverged(-0.1, 9.0, 20.0, radius=5.0)  # a positive location
    assert not metrics.fit_diverged(5.0, 9.0, 20.0, radius=5.0)  # capped at the radius


# --- dispatch and summary ------------------------------------------------------------------

def test_run_metric_dispatches_and_summary_skips_nan(model, sample):
    x, y = sample
    direct = metrics.loss_sensitivity(model, x[:10], y[:10])
    assert np.array_equal(metrics.run_metric("loss_sensitivity", model, x[:10], y[:10], {}),
                          direct)
    with pytest.raises(ValueError, match="unknown parameter"):
        metrics.run_metric("empirical_robustness", model, x, y, {"eps_iter": 0.1})
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.run_metric("clever", model, x, y, {})
    stats = metrics.summary(np.array([1.0, 2.0, np.nan, 3.0]))
    assert stats == {"mean": 2.0, "std": 1.0, "n": 3, "n_total": 4}
    assert np.isnan(metrics.summary(np.array([np.nan]))["mean"])


def test_clever_repeats_keep_the_single_draw_and_add_a_spread(trained_lenet, sample):
    from advfit.evaluation.snapshot_metrics import metrics_by_epoch, repeat_seeds

    model, _, snapshot_dir = trained_lenet
    snapshots = {3: snapshot_dir / snapshot_name(3)}
    x = sample[0][:3]
    params = {"clever_u": {"nb_batches": 20, "batch_size": 10}}
    single = metrics_by_epoch(model, snapshots, x, sample[1][:3], params, seed=5)[0]
    model.load_weights(snapshots[3])
    draw = metrics.run_metric("clever_u", model, x, sample[1][:3], params["clever_u"], seed=5)
    assert single["mean"] == metrics.summary(draw)["mean"]  # R = 1: today's number
    assert single["repeats"] == 1 and np.isnan(single["repeat_std"])
    three = metrics_by_epoch(model, snapshots, x, sample[1][:3], params, seed=5,
                             clever_repeats=3)[0]
    seeds = repeat_seeds(5, 3)
    assert seeds[0] == 5 and len(set(seeds)) == 3
    assert three["repeats"] == 3 and three["repeat_std"] > 0
    assert three["repeat_low"] < three["mean"] < three["repeat_high"]
