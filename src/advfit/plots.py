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


def plot_knn_train_test_vs_k(table: pd.DataFrame):
    """K-NN training and test accuracy against K (paper 000 Fig. 7)."""
    data = table[table.eval_set.isin(["train", "test"])]
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sns.lineplot(data=data, x="k", y="accuracy", hue="eval_set", marker="o", errorbar="sd", ax=ax)
    ax.set_xticks(sorted(data.k.unique()))
    ax.set_xlabel("K (number of neighbours)")
    ax.set_ylabel("accuracy (mean ± sd over splits)")
    ax.legend(title="set")
    ax.set_title("K-NN: fitting (train) and generalisation (test)")
    return fig


def plot_knn_accuracy_vs_k(table: pd.DataFrame):
    """K-NN accuracy against K on the test set, fail subset and adversarial sets (Fig. 8)."""
    data = table[table.eval_set != "train"]
    data = data.assign(set=[set_label(s, a) for s, a in zip(data.eval_set, data.attack)])
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=data, x="k", y="accuracy", hue="set", marker="o", errorbar="sd", ax=ax)
    ax.set_xticks(sorted(data.k.unique()))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("K (number of neighbours)")
    ax.set_ylabel("accuracy (mean ± sd over splits)")
    ax.set_title("K-NN accuracy; fail subset and AEs: 0 at K = Z")
    ax.legend(title="set", bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


def plot_knn_slope_pvalues(tests: pd.DataFrame):
    """p-values of the slope tests per j, log scale, 95 % and 99 % thresholds (Fig. 9)."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    data = tests.assign(p_value=pd.to_numeric(tests.p_value, errors="coerce"))
    palette = dict(zip(sorted(data.attack.unique()), sns.color_palette()))
    styles = {"welch": ("o", "-"), "paired": ("s", "--")}
    for (attack, test), group in data.groupby(["attack", "test"]):
        group = group.dropna(subset=["p_value"]).sort_values("j")
        if len(group):
            marker, line = styles.get(test, ("^", ":"))
            ax.plot(group.j, group.p_value, marker=marker, ls=line, color=palette[attack],
                    label=f"{attack}, {test}")
    ax.set_yscale("log")
    for level, label in ((0.05, "p = 0.05 (95 %)"), (0.01, "p = 0.01 (99 %)")):
        ax.axhline(level, color="grey", ls=":", lw=1)
        ax.text(1.0, level, f" {label}", transform=ax.get_yaxis_transform(), va="center",
                fontsize=8)
    ax.set_xticks(sorted(data.j.unique()))
    undefined = int(data.p_value.isna().sum())
    if undefined:
        ax.text(0.01, 0.02, f"{undefined} of {len(data)} tests undefined (infinite slopes; "
                "see knn_slope_tests.csv)", transform=ax.transAxes, fontsize=8)
    ax.set_xlabel("j (slope S_j = A_j / A_{j+2})")
    ax.set_ylabel("p-value (log scale)")
    ax.set_title("Adversarial vs fail-subset slopes: Welch (solid), paired (dashed)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(bbox_to_anchor=(1.25, 1), loc="upper left", fontsize=8)
    return fig


def plot_delta_boxes(deltas: pd.DataFrame, tests: pd.DataFrame):
    """ACC(E) - ACC(M) per split for every set, as box plots per regime (paper 000 Figs. 12, 15)."""
    data = deltas.assign(set=[set_label(s, a) for s, a in zip(deltas.eval_set, deltas.attack)])
    sns.set_theme(style="whitegrid", context="notebook")
    grid = sns.catplot(data=data, x="set", y="delta", col="regime", kind="box", height=4,
                       aspect=1.3, color="lightsteelblue")
    grid.map_dataframe(sns.stripplot, x="set", y="delta", color="black", size=3)
    for regime, ax in grid.axes_dict.items():
        ax.axhline(0, color="grey", lw=0.8)
        ax.tick_params(axis="x", rotation=30)
        lines = [f"{r.attack}: p = {r.p_value:.2g}" for r in tests[tests.regime == regime].itertuples()
                 if r.p_value == r.p_value]
        if lines:
            ax.text(0.02, 0.98, "Welch vs test\n" + "\n".join(lines), transform=ax.transAxes,
                    va="top", fontsize=8)
    grid.set_axis_labels("evaluation set", "ACC(last epoch) − ACC(best epoch)")
    return grid.figure


def plot_l2_distribution(per_ae: pd.DataFrame):
    """Distribution of the per-AE L2 distances, per attack and regime (paper 000 Fig. 13)."""
    convention = per_ae.l2_convention.iloc[0] if len(per_ae) else "channels"
    sns.set_theme(style="whitegrid", context="notebook")
    grid = sns.displot(data=per_ae, x="l2", hue="attack", col="regime", kind="hist",
                       element="step", stat="density", common_norm=False, height=4, aspect=1.2)
    grid.set_axis_labels(f"L2 distance to the original ({convention} convention)", "density")
    return grid.figure


METRIC_LABELS = {
    "clever_u": "CLEVER score (untargeted)",
    "loss_sensitivity": "loss sensitivity (‖∇x loss‖₂)",
    "empirical_robustness": "empirical robustness (‖δ‖ / ‖x‖, FGSM)",
}


def plot_robustness_metrics(table: pd.DataFrame):
    """Each metric against epoch per regime: mean over splits of the per-split means ± sd
    (paper 002 Figs. 5, 6, 9, 10)."""
    sns.set_theme(style="whitegrid", context="notebook")
    grid = sns.relplot(data=table, x="epoch", y="mean", hue="regime", col="metric", kind="line",
                       errorbar="sd", marker="o", height=3.8, aspect=1.1,
                       facet_kws={"sharey": False})
    for metric, ax in grid.axes_dict.items():
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.set_ylabel("mean over test points")
    _integer_epochs(grid)
    grid.set_xlabels("epoch (snapshot)")
    return grid.figure
