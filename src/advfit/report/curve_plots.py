"""Robustness curves (issue 23): robust accuracy against eps, one curve per snapshot."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from advfit.report.plots import (_band_name, _legend_below, _n_splits, _panels, _splits,
                                 _theme)

# M and E stand out against the epoch colours (a light-to-dark sequential map)
_HIGHLIGHT = {"best": {"color": "0.1", "ls": "-", "lw": 2.6,
                       "label": "M: best epoch (each split's own)"},
              "last": {"color": sns.color_palette("deep")[3], "ls": "--", "lw": 2.6,
                       "label": "E: last epoch"}}
_EPOCH_CMAP = "crest"


def _norm_name(norm) -> str:
    return "L-inf" if str(norm) == "inf" else f"L{norm}"


def _mean_curve(rows: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Mean robust accuracy over splits per eps, with the t-interval of that mean."""
    from advfit.statistics.inference import t_interval

    grouped = rows.groupby("eps").robust_accuracy
    band = grouped.apply(lambda v: t_interval(v, confidence))
    return pd.DataFrame({"mean": grouped.mean(), "low": band.str[0], "high": band.str[1]})


def _highlight(ax, rows: pd.DataFrame, which: str, confidence: float) -> None:
    """The M or E curve, thick, with its band; the check attack's value as a cross."""
    style = {k: v for k, v in _HIGHLIGHT[which].items() if k != "label"}
    curve = _mean_curve(rows, confidence)
    ax.plot(curve.index, curve["mean"], zorder=4, marker="o", markersize=3, **style)
    ax.fill_between(curve.index, curve["low"], curve["high"], color=style["color"], alpha=0.15,
                    lw=0, zorder=3)
    checked = rows.drop_duplicates("split")
    if "check_eps" in checked and checked.check_eps.notna().any():
        ax.plot(checked.check_eps.mean(), checked.check_robust_accuracy.mean(), marker="X",
                markersize=9, color=style["color"], mec="white", zorder=5, ls="none")


def _regime_panel(ax, rows: pd.DataFrame, cmap, colour_norm, confidence: float) -> None:
    # every epoch's mean over splits, coloured by epoch: how the curve moves with training
    for epoch, by_epoch in rows.groupby("epoch"):
        mean = by_epoch.groupby("eps").robust_accuracy.mean()
        ax.plot(mean.index, mean.values, color=cmap(colour_norm(epoch)), lw=1.1, alpha=0.85,
                zorder=2)
    _highlight(ax, rows[rows.is_best.astype(bool)], "best", confidence)
    _highlight(ax, rows[rows.is_last.astype(bool)], "last", confidence)


def plot_robustness_curves(table: pd.DataFrame, confidence: float = 0.95):
    """Per regime: robust accuracy against eps for every chosen snapshot.

    Each epoch's curve is the mean over splits, coloured by epoch; M (each
    split's best epoch) and E (the last) are drawn thick with the t-interval
    of their mean over splits. A cross marks the fixed-eps check attack's
    robust accuracy at its eps for M and E, where the table has one.
    """
    _theme()
    regimes = list(dict.fromkeys(table.regime))
    fig, axes, ncols = _panels(len(regimes), 4.2, 3.4, sharey=True)
    epochs = table.epoch.astype(int)
    cmap = sns.color_palette(_EPOCH_CMAP, as_cmap=True)
    colour_norm = mpl.colors.Normalize(epochs.min(), max(epochs.max(), epochs.min() + 1))
    norm = _norm_name(table.norm.iloc[0]) if len(table) else ""
    for i, (regime, ax) in enumerate(zip(regimes, axes)):
        _regime_panel(ax, table[table.regime == regime], cmap, colour_norm, confidence)
        ax.set_title(f"regime: {regime}")
        ax.set_xlabel(f"eps ({norm} budget, pixel values in [0, 1])")
        ax.set_ylabel("robust accuracy (fraction)" if i % ncols == 0 else "")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(left=0)
    bar = fig.colorbar(mpl.cm.ScalarMappable(colour_norm, cmap), ax=axes, label="epoch",
                       shrink=0.9)
    bar.locator = MaxNLocator(integer=True)  # epochs are whole numbers
    bar.update_ticks()
    handles = [Line2D([], [], **{k: v for k, v in s.items() if k != "label"})
               for s in _HIGHLIGHT.values()]
    labels = [s["label"] for s in _HIGHLIGHT.values()]
    check = table.check_attack.replace("", np.nan).dropna() if "check_attack" in table else []
    if len(check):
        handles.append(Line2D([], [], marker="X", color="0.4", ls="none", markersize=8))
        labels.append(f"check: {check.iloc[0]} at its eps (M, E)")
    _legend_below(fig, handles, labels, "snapshot", 3)
    attack = table.attack.iloc[0] if len(table) else ""
    fig.suptitle(f"Robustness curves: {attack} minimal {norm} norms, robust accuracy against "
                 f"eps\nmean over {_splits(_n_splits(table))}; M and E with "
                 f"{_band_name(confidence)}", fontsize=11)
    return fig
