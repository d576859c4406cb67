"""Every attack on a real trained LeNet-5: success, bounds, minimality, targets, agreement."""

import inspect
import logging

import numpy as np
import pytest

from advfit import attacks, runtime
from advfit.attacks.adversarial_sets import predict_labels
from advfit.attacks import (ATTACK_DEFAULTS, ATTACK_PARAMS, ATTACKS, TARGETED, AttackSpec,
                            run_attack)
from advfit.runtime.layout import snapshot_name

N_SAMPLES = 30
LINF = {
    "fgsm": {"eps": 0.3},
    "fgsm_art": {"eps": 0.3},
    "pgd": {"eps": 0.3, "eps_iter": 0.03, "nb_iter": 20},
    "pgd_art": {"eps": 0.3, "eps_iter": 0.03, "nb_iter": 20},
    "bim": {"eps": 0.3, "eps_iter": 0.03, "nb_iter": 20},
}


@pytest.fixture(scope="module")
def model(trained_lenet):
    model, _, snapshot_dir = trained_lenet
    model.load_weights(snapshot_dir / snapshot_name(3))
    return model


@pytest.fixture(scope="module")
def correct(model, digits):
    """The first correctly classified test images: what the workflow attacks."""
    x, y = digits.take(digits.official_test)
    keep = np.flatnonzero(predict_labels(model, x) == y)[:N_SAMPLES]
    return x[keep], y[keep]


@pytest.fixture(scope="module")
def targets(correct):
    return (correct[1] + 3) % 10


def l2(x_adv, x):
    return np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)


def fooled(model, x_adv, y):
    return predict_labels(model, x_adv) != y


def check_images(x_adv, x):
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


# --- parameter descriptions -------------------------------------------------

@pytest.mark.parametrize("method", sorted(ATTACKS))
def test_each_default_is_declared_once(method):
    """The function's keywords are the declared parameters, none with a default of its own."""
    signature = inspect.signature(ATTACKS[method].__wrapped__)
    keywords = {name: p for name, p in signature.parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "y_target"}
    assert set(keywords) == set(ATTACK_PARAMS[method])
    assert all(p.default is inspect.Parameter.empty for p in keywords.values())
    for name, spec in ATTACK_PARAMS[method].items():
        if spec.required:
            assert name not in ATTACK_DEFAULTS[method]
        else:
            assert ATTACK_DEFAULTS[method][name] == spec.default
            if spec.minimum is not None and spec.default is not None:
                assert spec.default >= spec.minimum
            if spec.enum is not None:
                assert spec.default in spec.enum
    assert ("y_target" in signature.parameters) == (method in TARGETED)


def test_defaults_are_filled_in_and_mistakes_named(model, correct):
    x, y = correct
    # deepfool with only max_iter given runs with the declared nb_grads, overshoot, batch_size
    assert attacks.deepfool(model, x[:3], y[:3], max_iter=5).shape == x[:3].shape
    with pytest.raises(ValueError, match="unknown parameter.*'epsilon'"):
        attacks.deepfool(model, x, y, epsilon=0.1)
    with pytest.raises(ValueError, match="missing parameter.*'eps_iter'"):
        attacks.pgd(model, x, y, eps=0.1, nb_iter=3)
    with pytest.raises(ValueError, match="deepfool has no targeted form"):
        run_attack("deepfool", model, x, y, {}, y_target=(y + 1) % 10)


def test_an_attack_entry_is_normalised_once():
    spec = AttackSpec.from_config("pgd_next", {"method": "pgd", "eps": 0.1, "eps_iter": 0.01,
                                               "nb_iter": 3, "target": "next"})
    assert (spec.method, spec.target) == ("pgd", "next")
    assert spec.params == {"eps": 0.1, "eps_iter": 0.01, "nb_iter": 3}
    assert spec.record == {"eps": 0.1, "eps_iter": 0.01, "nb_iter": 3, "target": "next"}
    plugin = AttackSpec.from_config("mine", {"method": "plugin", "function": "a.py:f",
                                             "params": {"k": 1}})
    assert (plugin.method, plugin.function, plugin.params, plugin.target, plugin.label) == (
        "plugin", "a.py:f", {"k": 1}, "none", "a.py:f")


# --- the ART classifier -------------------------------------------------------

def test_art_classifier_matches_stock_gradients_and_accepts_numpy_labels(model, correct):
    x = correct[0][:6]
    ours, stock = attacks.art_classifier(model), attacks.art_classifier(model, stock=True)
    # the bug behind clever_u's crash: np.argmax's np.int64 is "not iterable"
    with pytest.raises(TypeError, match="not iterable"):
        stock.class_gradient(x, label=np.int64(3))
    np.testing.assert_allclose(ours.class_gradient(x, label=np.int64(3)),
                               stock.class_gradient(x, label=3), atol=1e-5)
    labels = np.array([0, 1, 2, 3, 4, 5])
    np.testing.assert_allclose(ours.class_gradient(x, label=labels),
                               stock.class_gradient(x, label=labels), atol=1e-5)
    every = ours.class_gradient(x)
    assert every.shape == (6, 10, 8, 8, 1)
    np.testing.assert_allclose(every, stock.class_gradient(x), atol=1e-5)
    assert np.abs(every).max() > 0.1  # real gradients, not zeros
    assert ours.class_gradient(x[:0], label=np.zeros(0, int)).shape == (0, 1, 8, 8, 1)


# --- gradient attacks with an L-inf bound --------------------------------------

def test_fgsm_cleverhans_and_art_give_the_same_examples(model, digits):
    x, y = digits.take(digits.official_test[:100])
    for norm, eps in (("inf", 0.1), (2, 0.8)):
        a = attacks.fgsm(model, x, y, eps=eps, norm=norm)
        b = attacks.fgsm_art(model, x, y, eps=eps, norm=norm)
        assert np.abs(a - b).max() <= 1e-6
        assert np.abs(a - x).max() > 0.05  # the examples moved


@pytest.mark.parametrize("method", sorted(LINF))
def test_linf_attacks_respect_their_bound_and_succeed(model, correct, method):
    x, y = correct
    params = LINF[method]
    x_adv = run_attack(method, model, x, y, params)
    check_images(x_adv, x)
    change = np.abs(x_adv - x)
    assert change.max() <= params["eps"] + 1e-6
    assert change.max() >= params["eps"] - 1e-6  # the budget is used, not left idle
    if method.startswith("fgsm"):
        # one signed step: every value not clipped by [0, 1] moves by exactly eps
        inside = (x > 0.3 + 1e-6) & (x < 0.7 - 1e-6)
        np.testing.assert_allclose(change[inside], 0.3, atol=1e-6)
    assert fooled(model, x_adv, y).mean() >= (0.9 if method.startswith("fgsm") else 0.95)


def test_pgd_starts_at_random_and_bim_does_not(model, correct):
    x, y = correct
    params = LINF["bim"]
    x_bim = attacks.bim(model, x, y, **params)
    assert np.array_equal(x_bim, attacks.pgd(model, x, y, rand_init=False, **params))
    # the random start comes from the job's seeded generator: reproducible, yet random
    runtime.configure(2, seed=3)
    x_pgd = attacks.pgd(model, x, y, **params)
    runtime.configure(2, seed=3)
    assert np.array_equal(x_pgd, attacks.pgd(model, x, y, **params))
    assert np.abs(x_pgd - x_bim).max() > 0.01
    assert not np.array_equal(x_pgd, attacks.pgd(model, x, y, **params))  # a fresh start


# --- minimal-perturbation attacks -------------------------------------------------

@pytest.fixture(scope="module")
def minimal_examples(model, correct):
    x, y = correct
    return {
        "cw_l2": attacks.cw_l2(model, x, y),
        "cw_l2_art": attacks.cw_l2_art(model, x, y),
        "deepfool": attacks.deepfool(model, x, y),
        "fgsm": attacks.fgsm(model, x, y, eps=0.3),
    }


@pytest.mark.parametrize("method,threshold", [("cw_l2", 0.95), ("cw_l2_art", 0.9),
                                              ("deepfool", 0.95)])
def test_minimal_attacks_succeed(model, correct, minimal_examples, method, threshold):
    x, y = correct
    check_images(minimal_examples[method], x)
    assert fooled(model, minimal_examples[method], y).mean() >= threshold


def test_minimal_attacks_need_far_less_l2_than_fgsm(model, correct, minimal_examples):
    x, y = correct
    distance = {name: l2(x_adv, x) for name, x_adv in minimal_examples.items()}
    success = {name: fooled(model, x_adv, y) for name, x_adv in minimal_examples.items()}
    both = success["fgsm"] & success["cw_l2"] & success["deepfool"] & success["cw_l2_art"]
    assert both.sum() >= 20
    fgsm_l2 = distance["fgsm"][both].mean()
    for name in ("cw_l2", "cw_l2_art", "deepfool"):
        assert distance[name][both].mean() < 0.5 * fgsm_l2, name
    # a correct CW optimises the distance: ours beats DeepFool's and ART's line search
    assert distance["cw_l2"][both].mean() < distance["deepfool"][both].mean()
    assert distance["cw_l2"][both].mean() < distance["cw_l2_art"][both].mean()


def test_cw_examples_sit_just_past_the_boundary(model, correct, minimal_examples):
    """Shrinking a minimal perturbation by 10 % must undo it; FGSM's is far past the boundary."""
    x, y = correct
    for name, expected in (("cw_l2", 0.9), ("deepfool", 0.7)):
        x_adv = minimal_examples[name]
        hit = fooled(model, x_adv, y)
        restored = ~fooled(model, x + 0.9 * (x_adv - x), y)
        assert restored[hit].mean() >= expected, name
    x_fgsm = minimal_examples["fgsm"]
    assert (~fooled(model, x + 0.9 * (x_fgsm - x), y)).mean() < 0.2


def test_cw_logs_progress(model, correct, caplog):
    x, y = correct
    with caplog.at_level(logging.INFO, logger="advfit"):
        attacks.cw_l2(model, x[:4], y[:4], max_iter=10, binary_search_steps=2, batch_size=2)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("cw_l2: 2/4 images done") for m in messages)
    assert any(m.startswith("cw_l2: 4/4 images done") for m in messages)
    assert any("AEs fooled" in m for m in messages)


def test_hopskipjump_succeeds_without_gradients(model, correct):
    x, y = correct[0][:12], correct[1][:12]
    x_adv = attacks.hopskipjump(model, x, y)
    check_images(x_adv, x)
    assert fooled(model, x_adv, y).mean() >= 0.9
    assert l2(x_adv, x).mean() < 1.2  # it walks to the boundary, well inside FGSM's ~1.9


# --- targeted ------------------------------------------------------------------------

@pytest.mark.parametrize("method,params,threshold,n", [
    ("fgsm", {"eps": 0.3}, 0.25, N_SAMPLES),
    ("pgd", LINF["pgd"], 0.5, N_SAMPLES),
    ("pgd_art", LINF["pgd_art"], 0.5, N_SAMPLES),
    ("bim", LINF["bim"], 0.5, N_SAMPLES),
    ("cw_l2", {}, 0.95, 15),
    ("cw_l2_art", {}, 0.35, 15),  # ART's defaults: 10 x 10 line-search steps
    ("hopskipjump", {}, 0.75, 8),
])
def test_targeted_variants_hit_the_target(model, correct, targets, method, params, threshold, n):
    x, y, target = correct[0][:n], correct[1][:n], targets[:n]
    x_adv = run_attack(method, model, x, y, params, y_target=target)
    check_images(x_adv, x)
    # chance would be ~0.1; an attack ignoring the target rarely lands on label + 3
    assert np.mean(predict_labels(model, x_adv) == target) >= threshold


def test_deepfool_has_no_targeted_form(model, correct):
    x, y = correct
    with pytest.raises(ValueError, match="no targeted form"):
        run_attack("deepfool", model, x, y, {}, y_target=y)


# --- never silently -------------------------------------------------------------------

def test_a_too_weak_attack_is_reported(model, correct, caplog):
    x, y = correct
    with caplog.at_level(logging.WARNING, logger="advfit"):
        x_adv = attacks.fgsm(model, x, y, eps=1e-4)
    assert np.all(predict_labels(model, x_adv) == y)
    assert any("no AE fooled" in r.getMessage() for r in caplog.records)


def test_broken_output_raises(model, correct):
    x, y = correct
    with pytest.raises(RuntimeError, match="non-finite"):
        attacks.finish("demo", model, x, np.full_like(x, np.nan), y, None)
    with pytest.raises(RuntimeError, match="outside"):
        attacks.finish("demo", model, x, x + 0.5, y, None)
    with pytest.raises(RuntimeError, match="shape"):
        attacks.finish("demo", model, x, x[:1], y, None)
    with pytest.raises(RuntimeError, match="dtype int64"):
        attacks.finish("demo", model, x, (x > 0.5).astype(np.int64), y, None)


def test_run_attack_rejects_unknown_methods(model, correct):
    with pytest.raises(ValueError, match="unknown attack method"):
        run_attack("cw", model, *correct, {})
