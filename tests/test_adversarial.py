"""Adversarial sets and fail subsets on a real trained model."""

import numpy as np
import pytest

from advfit.attacks.adversarial_sets import choose_sources, craft_adversarial_set, predict_labels
from advfit.attacks import AttackSpec, fgsm, pgd
from advfit.runtime.layout import snapshot_name


@pytest.fixture(scope="module")
def best_model(trained_lenet):
    model, _, snapshot_dir = trained_lenet
    model.load_weights(snapshot_dir / snapshot_name(3))
    return model


def test_fgsm_respects_its_linf_bound_and_range(best_model, digits):
    x, y = digits.take(digits.official_test[:100])
    x_adv = fgsm(best_model, x, y, eps=0.1)
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # FGSM moves every unclipped value by exactly eps
    inside = (x > 0.1 + 1e-6) & (x < 0.9 - 1e-6)
    assert np.allclose(np.abs(x_adv - x)[inside], 0.1, atol=1e-6)


def test_pgd_respects_bound_and_beats_fgsm(best_model, digits):
    x, y = digits.take(digits.official_test[:100])
    x_pgd = pgd(best_model, x, y, eps=0.1, eps_iter=0.01, nb_iter=20, rand_init=True)
    assert np.abs(x_pgd - x).max() <= 0.1 + 1e-6
    assert x_pgd.min() >= 0.0 and x_pgd.max() <= 1.0
    x_fgsm = fgsm(best_model, x, y, eps=0.1)
    fooled_pgd = np.mean(predict_labels(best_model, x_pgd) != y)
    fooled_fgsm = np.mean(predict_labels(best_model, x_fgsm) != y)
    assert fooled_pgd >= fooled_fgsm
    assert fooled_pgd > 0.3  # a broken attack would leave the labels alone


def test_adversarial_set_fools_the_best_snapshot_entirely(best_model, digits):
    test_index = digits.official_test
    x_test, y_test = digits.take(test_index)
    adv = craft_adversarial_set(best_model, x_test, y_test, test_index,
                                AttackSpec.from_config("fgsm", {"eps": 0.2}), subset_size=150,
                                seed=0)
    assert adv["n_tried"] == 150
    assert adv["n_success"] == len(adv["x"]) > 50
    assert np.all(predict_labels(best_model, adv["x"]) != adv["y"])  # accuracy exactly 0
    assert np.array_equal(digits.y[adv["source_index"]], adv["y"])  # traced to its originals
    originals = digits.x[adv["source_index"]]
    assert np.abs(adv["x"] - originals).max() <= 0.2 + 1e-6
    # every source was correctly classified before the attack
    assert np.all(predict_labels(best_model, originals) == adv["y"])


def test_subset_all_attacks_every_correctly_classified_test_sample(best_model, digits):
    test_index = digits.official_test
    x_test, y_test = digits.take(test_index)
    correct = predict_labels(best_model, x_test) == y_test
    assert 100 < correct.sum() < len(y_test)  # "all" must differ from both 150 and the test set
    adv = craft_adversarial_set(best_model, x_test, y_test, test_index,
                                AttackSpec.from_config("fgsm", {"eps": 0.2}), subset_size="all",
                                seed=0)
    assert adv["n_tried"] == correct.sum()
    assert set(adv["source_index"]) <= set(test_index[correct])


def test_sources_are_a_seeded_subsample():
    correct = np.arange(100, 200)
    a = choose_sources(correct, 30, seed=1)
    assert len(a) == 30 and len(set(a)) == 30 and set(a) <= set(correct)
    assert np.array_equal(a, choose_sources(correct, 30, seed=1))
    assert not np.array_equal(a, choose_sources(correct, 30, seed=2))
    assert np.array_equal(choose_sources(correct, 500, seed=1), correct)
    assert np.array_equal(choose_sources(correct[::-1], "all", seed=1), correct)


def test_pgd_random_start_is_reproducible_from_the_seed(best_model, digits):
    import keras

    x, y = digits.take(digits.official_test[:40])
    runs = []
    for seed in (3, 3, 4):
        keras.utils.set_random_seed(seed)
        runs.append(pgd(best_model, x, y, eps=0.1, eps_iter=0.02, nb_iter=3, rand_init=True))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
