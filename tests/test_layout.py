"""The run layout and table vocabulary (advfit.runtime.layout)."""

import pandas as pd

from advfit.statistics.aggregate import collect_accuracy
from advfit.runtime.layout import (EVAL_SETS, NO_ATTACK, epoch_of, eval_set_label, eval_set_rank,
                                   list_snapshots, list_states, snapshot_name, state_name)
from advfit.report.plots import set_label, set_order


def test_snapshot_names_parse_back_past_epoch_999(tmp_path):
    for epoch in (1, 35, 999, 1000, 12345):
        assert epoch_of(snapshot_name(epoch)) == epoch
        assert epoch_of(state_name(epoch), ".state.npz") == epoch
    assert snapshot_name(7) == "epoch_007.weights.h5"
    assert snapshot_name(1000) == "epoch_1000.weights.h5"  # a slice [6:9] would read 100
    assert epoch_of("epoch_1000.weights.h5") == 1000
    for other in ("epoch_12.weights.h5", "epoch_001.weights.h5.tmp", ".epoch_001.weights.h5",
                  "epoch_abc.weights.h5", "epoch_001.state.npz"):
        assert epoch_of(other) is None, other


def test_listing_sorts_numerically_and_separates_states(tmp_path):
    for epoch in (1000, 2, 999, 10):
        (tmp_path / snapshot_name(epoch)).touch()
    (tmp_path / state_name(999)).touch()
    (tmp_path / ".epoch_003.weights.h5.tmp123").touch()
    assert list(list_snapshots(tmp_path)) == [2, 10, 999, 1000]
    assert list_snapshots(tmp_path)[1000].name == "epoch_1000.weights.h5"
    assert list(list_states(tmp_path)) == [999]
    assert list_snapshots(tmp_path / "absent") == {}


def test_one_set_order_for_tables_and_figures():
    assert EVAL_SETS == ("train", "validation", "test", "fail_subset", "adversarial")
    assert [eval_set_rank(s) for s in EVAL_SETS] == [0, 1, 2, 3, 4]
    assert eval_set_rank("something_else") == len(EVAL_SETS)
    assert eval_set_label("fail_subset") == "fail subset"
    labels = [set_label("adversarial", "pgd"), set_label("fail_subset", NO_ATTACK),
              set_label("test", NO_ATTACK), set_label("adversarial", "fgsm"),
              set_label("train", NO_ATTACK)]
    assert set_order(labels) == ["train", "test", "fail subset", "adversarial (fgsm)",
                                 "adversarial (pgd)"]
    rows = [{"dataset": "d", "model": "m", "regime": "r", "split": 0, "epoch": 1,
             "eval_set": s, "attack": a, "n": 1, "n_correct": 1, "accuracy": 1.0}
            for s, a in [("adversarial", "fgsm"), ("fail_subset", NO_ATTACK),
                         ("train", NO_ATTACK), ("validation", NO_ATTACK)]]
    table = collect_accuracy([pd.DataFrame(rows)])
    assert table["eval_set"].tolist() == ["train", "validation", "fail_subset", "adversarial"]
