"""Figures: written atomically as PNG and SVG, and what a reader relies on in them."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from advfit.report import plots


def _accuracy(best_epochs: dict[tuple[str, int], int], epochs: int = 5):
    rows = []
    for (regime, split), best in best_epochs.items():
        for epoch in range(1, epochs + 1):
            for eval_set, attack in [("train", "none"), ("test", "none"),
                                     ("fail_subset", "none"), ("adversarial", "fgsm")]:
                accuracy = 0.0 if eval_set != "train" and epoch == best else 0.5
                rows.append({"regime": regime, "split": split, "epoch": epoch,
                             "eval_set": eval_set, "attack": attack, "n": 10,
                             "accuracy": accuracy})
    best = pd.DataFrame([{"regime": r, "split": s, "best_epoch": e}
                         for (r, s), e in best_epochs.items()])
    return pd.DataFrame(rows), best


def _figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_xlabel("x (units)")
    return fig


def test_save_figure_writes_png_and_a_reproducible_svg(tmp_path):
    import matplotlib.pyplot as plt

    plots.save_figure(_figure(), tmp_path / "a.png", tmp_path / "a.svg")
    plots.save_figure(_figure(), tmp_path / "b.png", tmp_path / "b.svg")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    root = ET.parse(tmp_path / "a.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # no date and fixed element ids: the same figure gives the same bytes
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.svg", "b.png", "b.svg"]
    assert plt.get_fignums() == []  # closed


def test_save_figure_leaves_nothing_behind_on_failure(tmp_path):
    import matplotlib.pyplot as plt

    with pytest.raises(ValueError):
        plots.save_figure(_figure(), tmp_path / "a.notaformat")
    assert list(tmp_path.iterdir()) == [] and plt.get_fignums() == []


def test_sets_keep_their_order_and_colour():
    labels = ["adversarial (pgd)", "test", "fail subset", "train", "adversarial (fgsm)"]
    assert plots.set_order(labels) == ["train", "test", "fail subset", "adversarial (fgsm)",
                                       "adversarial (pgd)"]
    palette = plots.set_palette(labels)
    assert len({tuple(c) for c in palette.values()}) == len(labels)  # all distinct
    assert palette["test"] == plots.set_palette(["test", "train"])["test"]
    assert plots.set_label("fail_subset", "none") == "fail subset"
    assert plots.set_label("adversarial", "fgsm") == "adversarial (fgsm)"


def test_accuracy_figure_marks_every_splits_best_epoch_inside_the_axes():
    table, best = _accuracy({("normal", 0): 5, ("normal", 1): 5, ("overfit", 0): 1,
                             ("overfit", 1): 3})
    fig = plots.plot_accuracy_vs_epoch(table, best)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["regime: normal", "regime: overfit"]
    for ax, expected in zip(axes, ([5, 5], [1, 3])):
        marks = sorted(line.get_xdata()[0] for line in ax.get_lines()
                       if line.get_linestyle() == ":")
        assert marks == expected
        low, high = ax.get_xlim()
        assert low < 1 and high > 5  # a mark on the first or last epoch is not on the frame
        assert ax.get_ylim() == (-0.02, 1.02)
    assert axes[0].get_ylabel() == "accuracy (fraction correct)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:4] == ["train", "test", "fail subset", "adversarial (fgsm)"]
    assert "2 splits" in fig.get_suptitle()


def test_empty_sets_are_named_in_the_knn_legend():
    rows = []
    for split in (0, 1):
        for k in (1, 3, 5):
            rows += [{"split": split, "k": k, "eval_set": "test", "attack": "none", "n": 50,
                      "accuracy": 0.8},
                     {"split": split, "k": k, "eval_set": "fail_subset", "attack": "none",
                      "n": 9, "accuracy": 0.0 if k == 5 else 0.3},
                     {"split": split, "k": k, "eval_set": "adversarial", "attack": "deepfool",
                      "n": 0, "accuracy": np.nan}]
    fig = plots.plot_knn_accuracy_vs_k(pd.DataFrame(rows))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["test", "fail subset", "adversarial (deepfool): empty"]


def test_delta_labels_carry_the_welch_p_value_or_na():
    deltas = pd.DataFrame([
        {"regime": "overfit", "split": s, "eval_set": e, "attack": a, "delta": d}
        for s in (0, 1) for e, a, d in [("test", "none", -0.01 * s),
                                        ("adversarial", "fgsm", 0.2 + 0.1 * s),
                                        ("adversarial", "pgd", 0.0)]])
    tests = pd.DataFrame([
        {"regime": "overfit", "attack": "fgsm", "p_value": 0.0123, "note": ""},
        {"regime": "overfit", "attack": "pgd", "p_value": np.nan, "note": "zero variance"}])
    fig = plots.plot_delta_boxes(deltas, tests)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["test", "adversarial (fgsm)\nWelch p = 0.012",
                      "adversarial (pgd)\nWelch p: n/a"]


@pytest.mark.parametrize("spread, log", [(10.0, False), (1000.0, True)])
def test_l2_axis_is_logarithmic_only_for_a_wide_spread(spread, log):
    rng = np.random.default_rng(0)
    per_ae = pd.DataFrame({"regime": "normal", "attack": np.repeat(["deepfool", "fgsm"], 50),
                           "l2": np.r_[rng.uniform(1, 2, 50), rng.uniform(1, 2, 50) * spread],
                           "l2_convention": "pixels"})
    ax = plots.plot_l2_distribution(per_ae).axes[0]
    assert ax.get_xscale() == ("log" if log else "linear")
    assert "pixels convention" in ax.get_xlabel() and "[0, 1]" in ax.get_xlabel()
    assert "deepfool 50, fgsm 50" in ax.get_title()


def test_delta_boxes_are_drawn_the_same_twice_and_leave_numpy_alone(tmp_path):
    """seaborn jitters the dots with np.random's global state: seeded, then restored."""
    rng = np.random.default_rng(0)
    deltas = pd.DataFrame([{"regime": "r", "split": s, "eval_set": e, "attack": a,
                            "delta": rng.normal()}
                           for s in range(5) for e, a in [("test", "none"),
                                                          ("adversarial", "fgsm")]])
    tests = pd.DataFrame([{"regime": "r", "attack": "fgsm", "p_value": 0.01}])
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    for name in ("a", "b"):
        plots.save_figure(plots.plot_delta_boxes(deltas, tests), tmp_path / f"{name}.png",
                          tmp_path / f"{name}.svg")
    assert np.random.random() == expected_next  # the caller's global state is untouched
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
