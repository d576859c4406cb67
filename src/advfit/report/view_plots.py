"""Figures of the two views of robustness (transfer and white-box) along training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from advfit.report.plots import (BEST_EPOCH_STYLE, _accuracy_panel, _band_name, _legend_below,
                                 _n_splits, _panels, _splits, _theme, t_band)

_VIEW_COLOURS = {"test set (clean)": sns.color_palette("deep")[2],
                 "transfer: M-crafted set replayed": sns.color_palette("deep")[4],
                 "white-box: snapshot attacked itself": sns.color_palette("deep")[3]}


def _view_curves(accuracy: pd.DataFrame, whitebox: pd.DataFrame, regime: str, attack: str):
    test = accuracy[(accuracy.regime == regime) & (accuracy.eval_set == "test")]
    transfer = accuracy[(accuracy.regime == regime) & (accuracy.eval_set == "adversarial")
                        & (accuracy.attack == attack)]
    white = whitebox[(whitebox.regime == regime) & (whitebox.attack == attack)]
    labels = list(_VIEW_COLOURS)
    return pd.concat([
        test[["split", "epoch", "accuracy"]].assign(view=labels[0]),
        transfer[["split", "epoch", "accuracy"]].assign(view=labels[1]),
        white[["split", "epoch", "robust_accuracy"]].rename(
            columns={"robust_accuracy": "accuracy"}).assign(view=labels[2]),
    ], ignore_index=True)


def plot_transfer_vs_whitebox(accuracy: pd.DataFrame, whitebox: pd.DataFrame,
                              best: pd.DataFrame, confidence: float = 0.95):
    """Per regime and white-box attack: accuracy against epoch in the two views.

    (a) the adversarial set crafted on M, replayed on every snapshot (the
    papers' transfer view); (b) the robust accuracy of each snapshot attacked
    itself with the same attack (white-box view); the clean test accuracy for
    reference. Mean and t-interval over splits; each split's M dotted.
    """
    _theme()
    pairs = [(r, a) for r in dict.fromkeys(whitebox.regime)
             for a in sorted(whitebox.attack.unique())]
    fig, axes, ncols = _panels(len(pairs), 4.2, 3.4, sharey=True)
    for i, ((regime, attack), ax) in enumerate(zip(pairs, axes)):
        curves = _view_curves(accuracy, whitebox, regime, attack)
        sns.lineplot(data=curves, x="epoch", y="accuracy", hue="view",
                     hue_order=list(_VIEW_COLOURS), palette=_VIEW_COLOURS,
                     errorbar=t_band(confidence),
                     marker="o", markersize=3, legend=False, ax=ax)
        _accuracy_panel(ax, best.loc[best.regime == regime, "best_epoch"], curves.epoch,
                        f"regime: {regime}, attack: {attack}", first_column=i % ncols == 0)
    handles = [Line2D([], [], color=c, lw=2, marker="o", markersize=3)
               for c in _VIEW_COLOURS.values()]
    handles.append(Line2D([], [], **BEST_EPOCH_STYLE))
    labels = list(_VIEW_COLOURS) + ["best epoch M of a split"]
    _legend_below(fig, handles, labels, "view", 2)
    fig.suptitle("Robustness along training, two views: the M-crafted set replayed (transfer) "
                 f"and each snapshot attacked itself (white-box)\nmean and "
                 f"{_band_name(confidence)} over {_splits(_n_splits(whitebox))}", fontsize=11)
    return fig


def plot_transfer_matrix(summary: pd.DataFrame):
    """Heatmaps of mean accuracy over splits: crafting epoch (rows) x evaluation epoch."""
    _theme()
    pairs = [(r, a) for r in dict.fromkeys(summary.regime)
             for a in sorted(summary.attack.unique())]
    fig, axes, _ = _panels(len(pairs), 4.6, 3.6)
    for (regime, attack), ax in zip(pairs, axes):
        rows = summary[(summary.regime == regime) & (summary.attack == attack)]
        grid = rows.pivot(index="craft_epoch", columns="eval_epoch", values="accuracy_mean")
        sns.heatmap(grid, vmin=0, vmax=1, cmap="viridis", ax=ax, square=False,
                    cbar_kws={"label": "accuracy (fraction correct)"},
                    mask=np.isnan(grid.to_numpy()))
        ax.set_title(f"regime: {regime}, attack: {attack}")
        ax.set_xlabel("evaluated at epoch")
        ax.set_ylabel("crafted at epoch")
        step = max(1, len(grid.columns) // 10)
        ax.set_xticks(np.arange(0, len(grid.columns), step) + 0.5,
                      [str(c) for c in grid.columns[::step]], rotation=0)
        ax.set_yticks(np.arange(len(grid.index)) + 0.5, [str(c) for c in grid.index], rotation=0)
    fig.suptitle("Transfer matrix: accuracy of each snapshot (columns) on the AEs crafted at "
                 "each crafting epoch (rows),\nmean over splits; the diagonal is 0 by "
                 "construction", fontsize=11)
    return fig
