"""Exact K-NN of experiment KNN: both algorithms, the tie rules, the evaluation sets."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from advfit.knn.neighbours import (NeighbourIndex, accuracy_by_k, accuracy_rows, attack_sources,
                                   fail_subset, filter_adversarial_set, knn_predict_all_k,
                                   nearest_neighbours, odd_ks, vote)

Z = 7
KS = odd_ks(Z)


@pytest.fixture(scope="module")
def digits_split():
    """Flattened digits in [0, 1] (float32), a fixed stratified 75/25 split."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)


def reference_neighbours(x_train, x_query, n):
    """Independent reference: the full distance matrix, ordered by (distance, index)."""
    diff = x_query[:, None, :].astype(np.float64) - x_train[None, :, :].astype(np.float64)
    dist = (diff**2).sum(axis=-1)
    index = np.broadcast_to(np.arange(len(x_train)), dist.shape)
    order = np.lexsort((index, dist), axis=1)[:, :n]
    return np.take_along_axis(dist, order, axis=1), order


def test_odd_ks_and_argument_checks():
    assert odd_ks(7) == [1, 3, 5, 7]
    assert odd_ks(1) == [1]
    for bad in (0, 4, -3, 2.5):
        with pytest.raises(ValueError, match="odd integer"):
            odd_ks(bad)
    with pytest.raises(ValueError, match="unknown algorithm"):
        NeighbourIndex(np.zeros((3, 2)), "ball_tree")
    with pytest.raises(ValueError, match="n_neighbours"):
        nearest_neighbours(np.zeros((3, 2)), np.zeros((1, 2)), 4)


def test_algorithms_agree_on_digits_for_every_odd_k(digits_split):
    x_train, x_test, y_train, y_test = digits_split
    dist_b, idx_b = nearest_neighbours(x_train, x_test, Z, "brute")
    dist_k, idx_k = nearest_neighbours(x_train, x_test, Z, "kd_tree")
    ref_dist, ref_idx = reference_neighbours(x_train, x_test, Z)
    # Identical neighbours and identical (bitwise) distances, equal to the reference.
    np.testing.assert_array_equal(idx_b, idx_k)
    np.testing.assert_array_equal(dist_b, dist_k)
    np.testing.assert_array_equal(idx_b, ref_idx)
    np.testing.assert_allclose(dist_b, ref_dist, rtol=1e-12)
    for tie in ("nearest", "smallest_label"):
        brute = knn_predict_all_k(x_train, y_train, x_test, KS, "brute", vote_tie=tie)
        kd = knn_predict_all_k(x_train, y_train, x_test, KS, "kd_tree", vote_tie=tie)
        assert sorted(brute) == KS
        for k in KS:
            np.testing.assert_array_equal(brute[k], kd[k])
    accuracy = accuracy_by_k(brute, y_test)
    assert all(0.95 < accuracy[k] < 1.0 for k in KS)  # digits is easy for K-NN


def test_smallest_label_rule_matches_scikit_learn_without_distance_ties():
    # Continuous random data: no two distances are equal, so neighbour order is
    # unambiguous and scikit-learn's vote (ties to the smallest label) must match.
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(300, 5))
    y_train = rng.integers(0, 4, size=300)
    x_query = rng.normal(size=(200, 5))
    predictions = knn_predict_all_k(x_train, y_train, x_query, KS, vote_tie="smallest_label")
    for k in KS:
        expected = KNeighborsClassifier(k, algorithm="brute").fit(x_train, y_train).predict(x_query)
        np.testing.assert_array_equal(predictions[k], expected)


def test_vote_tie_rules_by_hand():
    # Neighbours in order carry classes 2, 1, 1, 2, 0.
    codes = np.array([[2, 1, 1, 2, 0]])
    nearest = vote(codes, [1, 3, 5], n_classes=3, tie="nearest")
    smallest = vote(codes, [1, 3, 5], n_classes=3, tie="smallest_label")
    assert nearest[1][0] == 2 and smallest[1][0] == 2
    assert nearest[3][0] == 1 and smallest[3][0] == 1  # 1 wins 2 votes to 1
    # K = 5: classes 1 and 2 tie at 2 votes; class 2 owns the nearest neighbour.
    assert nearest[5][0] == 2
    assert smallest[5][0] == 1
    # Three classes with one vote each: the nearest neighbour's class, or the smallest.
    codes = np.array([[2, 0, 1]])
    assert vote(codes, [3], 3, "nearest")[3][0] == 2
    assert vote(codes, [3], 3, "smallest_label")[3][0] == 0
    with pytest.raises(ValueError, match="tie rule"):
        vote(codes, [3], 3, "random")


def test_labels_keep_their_values():
    x_train = np.array([[0.0], [1.0], [10.0]])
    y_train = np.array([7, 7, 42])
    predictions = knn_predict_all_k(x_train, y_train, np.array([[9.0], [0.2]]), [1, 3])
    np.testing.assert_array_equal(predictions[1], [42, 7])
    np.testing.assert_array_equal(predictions[3], [7, 7])


@pytest.mark.parametrize("algorithm", ["brute", "kd_tree"])
def test_neighbour_ties_go_to_the_smaller_training_index(algorithm):
    # Twenty copies of one point (more than the shortlist of 2 * Z, so the
    # exact slow path must collect the ties), then three points at equal
    # distance 1 from it, among other points.
    rng = np.random.default_rng(1)
    base = np.zeros(4, dtype=np.float32)
    others = rng.uniform(3, 5, size=(30, 4)).astype(np.float32)
    unit = np.eye(4, dtype=np.float32)[:3]
    x_train = np.concatenate([others[:10], np.repeat(base[None], 20, axis=0), others[10:], unit])
    copies, units = np.arange(10, 30), np.arange(50, 53)
    index = NeighbourIndex(x_train, algorithm)
    dist, idx = index.query(base[None], Z)
    assert index.n_slow_queries == 1
    np.testing.assert_array_equal(idx[0], copies[:Z])
    np.testing.assert_array_equal(dist[0], 0.0)
    # Near the copies: all 20 copies, then the two smaller of the three unit
    # points, tied at the boundary.
    dist, idx = index.query(np.full((1, 4), 0.1, np.float32), 22)
    np.testing.assert_array_equal(idx[0], np.concatenate([copies, units[:2]]))
    assert dist[0, 20] == dist[0, 21]
    # A query at the centre of the three unit points.
    centre = np.array([[1 / 3, 1 / 3, 1 / 3, 0]], dtype=np.float32)
    ref_dist, ref_idx = reference_neighbours(x_train, centre, 24)
    dist, idx = index.query(centre, 24)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(dist, ref_dist)
    # The 1-NN of a copy whose label differs from the first copy's: the first copy's label.
    y_train = np.arange(len(x_train)) % 3
    predicted = knn_predict_all_k(x_train, y_train, base[None], [1], algorithm)[1]
    assert predicted[0] == y_train[copies[0]]


def test_algorithms_agree_on_a_lattice_full_of_ties():
    # Integer lattice points, each present twice with different labels, and
    # queries on and between the lattice points: nearly every distance is tied.
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    x_train = np.concatenate([grid, grid]).astype(np.float32)
    y_train = np.concatenate([np.zeros(len(grid), int), np.ones(len(grid), int)])
    x_query = np.concatenate([grid, grid + 0.5]).astype(np.float32)
    ref_dist, ref_idx = reference_neighbours(x_train, x_query, Z)
    for algorithm in ("brute", "kd_tree"):
        dist, idx = nearest_neighbours(x_train, x_query, Z, algorithm, batch_size=13)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(dist, ref_dist)
    brute = knn_predict_all_k(x_train, y_train, x_query, KS, "brute")
    kd = knn_predict_all_k(x_train, y_train, x_query, KS, "kd_tree")
    for k in KS:
        np.testing.assert_array_equal(brute[k], kd[k])
    # On a lattice point the 1-NN is the first copy (smaller index): label 0.
    np.testing.assert_array_equal(brute[1][:len(grid)], 0)


def test_float32_and_float64_products_give_the_same_neighbours(digits_split):
    x_train, x_test, _, _ = digits_split
    fast = NeighbourIndex(x_train, "brute", gemm_dtype=np.float32).query(x_test, Z)
    exact = NeighbourIndex(x_train, "brute", gemm_dtype=np.float64).query(x_test, Z)
    np.testing.assert_array_equal(fast[1], exact[1])
    np.testing.assert_array_equal(fast[0], exact[0])
    # float64 inputs: the float32 product is only a shortlist, the result is exact.
    wide = NeighbourIndex(x_train.astype(np.float64), "brute", gemm_dtype=np.float32)
    np.testing.assert_array_equal(wide.query(x_test.astype(np.float64), Z)[1], exact[1])


def test_batched_equals_unbatched(digits_split):
    x_train, x_test, y_train, _ = digits_split
    whole = knn_predict_all_k(x_train, y_train, x_test, KS, batch_size=len(x_test))
    for algorithm, batch_size in (("brute", 1), ("brute", 7), ("kd_tree", 50)):
        batched = knn_predict_all_k(x_train, y_train, x_test, KS, algorithm, batch_size=batch_size)
        for k in KS:
            np.testing.assert_array_equal(batched[k], whole[k])


def test_one_nn_fits_distinct_training_points_exactly(digits_split):
    x_train, _, y_train, _ = digits_split
    assert len(np.unique(x_train, axis=0)) == len(x_train)  # distinct points
    predictions = knn_predict_all_k(x_train, y_train, x_train, KS)
    accuracy = accuracy_by_k(predictions, y_train)
    assert accuracy[1] == 1.0
    assert accuracy[Z] < 1.0  # larger K fits less


def test_fail_subset_and_filtered_adversarial_set_have_zero_z_nn_accuracy(digits_split):
    x_train, x_test, y_train, y_test = digits_split
    predicted = knn_predict_all_k(x_train, y_train, x_test, KS)
    fails = fail_subset(predicted[Z], y_test)
    sources = attack_sources(predicted[Z], y_test)
    assert len(fails) + len(sources) == len(y_test) and len(fails) > 0
    assert np.intersect1d(fails, sources).size == 0
    on_fails = knn_predict_all_k(x_train, y_train, x_test[fails], KS)
    assert accuracy_by_k(on_fails, y_test[fails])[Z] == 0.0
    assert accuracy_by_k(on_fails, y_test[fails])[1] > 0.0  # the trend the experiment measures

    # Stand-in AEs crafted elsewhere: noisy copies of the correctly classified test points.
    rng = np.random.default_rng(0)
    x_adv = np.clip(x_test[sources] + rng.normal(0, 0.45, x_test[sources].shape), 0, 1).astype(np.float32)
    y_adv = y_test[sources]
    on_all_aes = knn_predict_all_k(x_train, y_train, x_adv, KS)
    kept = filter_adversarial_set(x_adv, y_adv, sources, on_all_aes[Z])
    assert 0 < kept["n_kept"] < kept["n_tried"] == len(sources)
    np.testing.assert_array_equal(kept["source_index"], sources[kept["keep"]])
    np.testing.assert_array_equal(kept["x"], x_adv[kept["keep"]])
    # A fresh search on the kept AEs: the Z-NN misclassifies every one of them,
    # and every K's predictions equal those made on all AEs, subset.
    on_kept = knn_predict_all_k(x_train, y_train, kept["x"], KS)
    assert accuracy_by_k(on_kept, kept["y"])[Z] == 0.0
    for k in KS:
        np.testing.assert_array_equal(on_kept[k], on_all_aes[k][kept["keep"]])
    np.testing.assert_array_equal(kept["predicted"], on_kept[Z])


def test_accuracy_rows_on_concatenated_sets_and_empty_sets():
    predictions = {1: np.array([0, 1, 1, 2]), 3: np.array([0, 0, 1, 2])}
    rows = accuracy_rows(predictions, np.array([0, 1, 2]), "test", positions=slice(0, 3))
    assert [(r["k"], r["n"], r["n_correct"]) for r in rows] == [(1, 3, 2), (3, 3, 1)]
    assert rows[0]["attack"] == "none" and rows[0]["accuracy"] == 2 / 3
    rows = accuracy_rows(predictions, np.array([2]), "adversarial", "fgsm", positions=np.array([3]))
    assert rows[1]["accuracy"] == 1.0 and rows[1]["attack"] == "fgsm"
    empty = accuracy_rows(predictions, np.zeros(0, int), "fail_subset", positions=slice(4, 4))
    assert empty[0]["n"] == 0 and np.isnan(empty[0]["accuracy"])
    assert np.isnan(accuracy_by_k({1: np.zeros(0, int)}, np.zeros(0, int))[1])
    assert knn_predict_all_k(np.eye(3), [0, 1, 2], np.zeros((0, 3)), [1])[1].shape == (0,)
