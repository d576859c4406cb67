"""Snapshot evaluation: the rows, the fail subset, and their invariants."""

import numpy as np

from advfit.evaluation.snapshots import accuracy_rows, evaluate_split


def test_accuracy_rows_count_and_handle_empty_sets():
    correct = {1: np.array([True, False, True, True]), 2: np.array([False, False, True, True])}
    rows = accuracy_rows(correct, {("test", "none"): slice(0, 3),
                                   ("fail_subset", "none"): np.array([1]),
                                   ("adversarial", "pgd"): slice(4, 4)})
    by_key = {(r["epoch"], r["eval_set"]): r for r in rows}
    assert by_key[(1, "test")]["accuracy"] == 2 / 3 and by_key[(1, "test")]["n"] == 3
    assert by_key[(2, "test")]["n_correct"] == 1
    assert by_key[(1, "fail_subset")]["accuracy"] == 0.0
    assert by_key[(1, "adversarial")]["n"] == 0 and np.isnan(by_key[(1, "adversarial")]["accuracy"])


def test_evaluate_split_invariants(trained_lenet, digits):
    from advfit.attacks.adversarial_sets import craft_adversarial_set
    from advfit.attacks import AttackSpec
    from advfit.runtime.layout import snapshot_name

    model, _, snapshot_dir = trained_lenet
    split = {"train": digits.official_train[:1000], "validation": digits.official_train[1000:],
             "test": digits.official_test}
    best = 2
    model.load_weights(snapshot_dir / snapshot_name(best))
    x_test, y_test = digits.take(split["test"])
    adv = craft_adversarial_set(model, x_test, y_test, split["test"],
                                AttackSpec.from_config("fgsm", {"eps": 0.15}),
                                subset_size=100, seed=0)
    rows, fail_index = evaluate_split("lenet5", digits, split, snapshot_dir, best, {"fgsm": adv})
    table = {(r["epoch"], r["eval_set"]): r for r in rows}
    assert len(rows) == 3 * 5
    assert table[(best, "adversarial")]["accuracy"] == 0.0
    assert table[(best, "adversarial")]["n"] == len(adv["x"])
    assert table[(best, "fail_subset")]["accuracy"] == 0.0
    assert table[(best, "fail_subset")]["n"] == len(fail_index)
    # the fail subset is exactly the test samples the best snapshot gets wrong
    test_errors = table[(best, "test")]["n"] - table[(best, "test")]["n_correct"]
    assert len(fail_index) == test_errors
    assert set(fail_index) <= set(split["test"])
    assert table[(1, "train")]["n"] == 1000 and table[(1, "validation")]["n"] == 437


def test_traced_forward_gives_predicts_logits_exactly_and_follows_loaded_weights(trained_lenet, digits):
    from advfit.attacks.batching import predict_logits, traced_forward
    from advfit.runtime.layout import snapshot_name

    model, _, snapshot_dir = trained_lenet
    forward = traced_forward(model)
    x = digits.x[:2100]  # three batches of 1024, the last one partial
    for epoch in (1, 3):
        model.load_weights(snapshot_dir / snapshot_name(epoch))
        expected = model.predict(x, batch_size=1024, verbose=0)
        assert np.array_equal(predict_logits(forward, x, 1024), expected)
    model.load_weights(snapshot_dir / snapshot_name(1))
    assert not np.array_equal(predict_logits(forward, x, 1024), expected)  # weights followed
    assert predict_logits(forward, x[:0]).shape == (0, 10)
