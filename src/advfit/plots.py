"""Seaborn figures drawn from the tidy tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # jobs have no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .aggregate import NO_ATTACK  # noqa: E402


def set_label(eval_set: str, attack: str) -> str:
    return eval_set if attack == NO_ATTACK else f"adversarial ({attack})"


def plot_accuracy_vs_epoch(table: pd.DataFrame, best: pd.DataFrame):
    """Accuracy against epoch per regime, mean and standard deviation over splits.

    ``best`` holds each split's best epoch (columns regime, best_epoch), drawn
    as thin vertical lines.
    """
    data = table.assign(set=[set_label(s, a) for s, a in zip(table.eval_set, table.attack)])
    sns.set_theme(style="whitegrid", context="notebook")
    grid = sns.relplot(data=data, x="epoch", y="accuracy", hue="set", col="regime",
                       kind="line", errorbar="sd", height=4, aspect=1.2,
                       facet_kws={"sharey": True})
    for regime, ax in grid.axes_dict.items():
        for epoch in sorted(set(best.loc[best.regime == regime, "best_epoch"])):
            ax.axvline(epoch, color="black", lw=1.0, ls=":", alpha=0.7, zorder=0)
    _integer_epochs(grid)
    grid.set(ylim=(-0.02, 1.02))
    grid.set_axis_labels("epoch (snapshot)", "accuracy (mean ± sd over splits)")
    grid.figure.suptitle("Accuracy of every snapshot; dotted: each split's best snapshot", y=1.03)
    return grid.figure


def plot_asr_vs_epoch(table: pd.DataFrame):
    """Attack success rate (1 - accuracy) on each adversarial set, per attack."""
    data = table[table.eval_set == "adversarial"].assign(asr=lambda d: 1.0 - d.accuracy)
    sns.set_theme(style="whitegrid", context="notebook")
    grid = sns.relplot(data=data, x="epoch", y="asr", hue="regime", col="attack",
                       kind="line", errorbar="sd", height=4, aspect=1.2)
    _integer_epochs(grid)
    grid.set(ylim=(-0.02, 1.02))
    grid.set_axis_labels("epoch (snapshot)", "attack success rate (mean ± sd over splits)")
    return grid.figure


def _integer_epochs(grid) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def save_figure(fig, path) -> None:
    """Write a figure atomically, in the format its extension names."""
    from .io import atomic_path
    from pathlib import Path

    suffix = Path(path).suffix
    with atomic_path(path, suffix=suffix) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)
