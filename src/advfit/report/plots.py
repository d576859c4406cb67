"""Seaborn figures drawn from the tidy tables.

Every figure is sized to be read at page width (8 to 10 inches wide, text of
9 pt or more), names its axes with their units, keeps its legend below the
panels (never over data), and gives each evaluation set the same colour in
every figure. ``save_figure`` writes each figure as PNG and SVG.
"""

from __future__ import annotations

import contextlib

import matplotlib

matplotlib.use("Agg")  # jobs have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from advfit.runtime.layout import EVAL_SETS, FAIL_SUBSET, NO_ATTACK, eval_set_label  # noqa: E402

ACCURACY = "accuracy (fraction correct)"
CLEAN_SETS = ("train", "validation", "test")
SET_ORDER = tuple(eval_set_label(s) for s in EVAL_SETS[:EVAL_SETS.index(FAIL_SUBSET) + 1])
_DEEP = sns.color_palette("deep")
# train, validation, test, fail subset; then one colour per adversarial set
_SET_COLOURS = dict(zip(SET_ORDER, (_DEEP[0], _DEEP[1], _DEEP[2], _DEEP[3])))
_ADVERSARIAL_COLOURS = [_DEEP[i] for i in (4, 5, 6, 8, 9, 7)] + sns.color_palette("dark")
BEST_EPOCH_STYLE = {"color": "0.15", "ls": ":", "lw": 1.6}


def set_label(eval_set: str, attack: str) -> str:
    """How an evaluation set is named in figures: ``fail subset``, ``adversarial (fgsm)``."""
    return eval_set_label(eval_set) if attack == NO_ATTACK else f"adversarial ({attack})"


def set_order(labels) -> list[str]:
    """Train, validation, test, fail subset, then the adversarial sets by name."""
    present = set(labels)
    known = [s for s in SET_ORDER if s in present]
    return known + sorted(present - set(SET_ORDER))


def set_palette(labels) -> dict:
    """A fixed colour per set: the same set has the same colour in every figure."""
    adversarial = sorted(s for s in set(labels) if s not in _SET_COLOURS)
    colours = {s: _ADVERSARIAL_COLOURS[i % len(_ADVERSARIAL_COLOURS)]
               for i, s in enumerate(adversarial)}
    return {s: _SET_COLOURS.get(s, colours.get(s)) for s in labels}


def set_dashes(labels) -> dict:
    """Solid lines for the samples' own sets, dashed for the fail subset and AEs."""
    return {s: "" if s in CLEAN_SETS else (4, 2) for s in labels}


def _with_sets(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(set=[set_label(s, a) for s, a in zip(table.eval_set, table.attack)])


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook")


def _panels(n: int, width: float, height: float, max_cols: int = 2, **kwargs):
    """A figure with ``n`` panels (at most ``max_cols`` a row), constrained layout."""
    nrows = -(-max(n, 1) // max_cols)
    ncols = -(-max(n, 1) // nrows)  # balanced rows: 4 panels as 2 x 2, not 3 + 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.9),
                             squeeze=False, layout="constrained", **kwargs)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:max(n, 1)]), ncols


def _legend_below(fig, handles, labels, title: str, max_cols: int = 4) -> None:
    ncol = min(len(labels), max_cols) or 1
    fig.legend(handles, labels, title=title, loc="outside lower center", ncol=ncol,
               frameon=False)


def _legend_labels(data: pd.DataFrame, order) -> list[str]:
    """The sets' names; a set without samples (no AE kept) says so, since it draws no line."""
    sizes = data.groupby("set")["n"].sum() if "n" in data else pd.Series(dtype=float)
    return [f"{s}: empty" if sizes.get(s, 1) == 0 else s for s in order]


def _set_handles(order, palette, dashes):
    return [Line2D([], [], color=palette[s], lw=2, ls="-" if dashes[s] == "" else "--")
            for s in order]


def _integer_axis(ax, lo: float, hi: float) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(lo - 0.4, hi + 0.4)  # a mark at the first or last value stays visible


def _n_splits(table: pd.DataFrame) -> int:
    return int(table["split"].nunique()) if "split" in table and len(table) else 0


def _splits(n: int) -> str:
    return f"{n} split" if n == 1 else f"{n} splits"


def _accuracy_panel(ax, best_epochs, epochs, title: str, first_column: bool) -> None:
    """One panel of an accuracy-against-epoch figure: M marked, whole epochs, [0, 1]."""
    _mark_best_epochs(ax, best_epochs)
    _integer_axis(ax, epochs.min(), epochs.max())
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ACCURACY if first_column else "")


def _mark_best_epochs(ax, epochs, color="0.15") -> None:
    """One translucent dotted vertical line per split: the more splits share an epoch M,
    the darker its line."""
    for epoch in sorted(int(e) for e in epochs):
        ax.axvline(epoch, color=color, ls=":", lw=1.6, alpha=0.45, zorder=1.5)


def t_band(confidence: float = 0.95):
    """Seaborn errorbar: the t-interval of the mean over splits (advfit.statistics.inference)."""
    from advfit.statistics.inference import t_interval

    return lambda values: t_interval(values, confidence)


def _band_name(confidence: float) -> str:
    return f"{100 * confidence:g} % t-interval"


def plot_accuracy_vs_epoch(table: pd.DataFrame, best: pd.DataFrame, confidence: float = 0.95):
    """Accuracy against epoch per regime, mean and t-interval of the mean over splits.

    ``best`` holds each split's best epoch (columns regime, best_epoch), drawn
    as dotted vertical lines.
    """
    _theme()
    data = _with_sets(table)
    order = set_order(data.set)
    palette, dashes = set_palette(order), set_dashes(order)
    regimes = list(dict.fromkeys(data.regime))
    fig, axes, ncols = _panels(len(regimes), 4.2, 3.4, sharey=True)
    for i, (regime, ax) in enumerate(zip(regimes, axes)):
        rows = data[data.regime == regime]
        sns.lineplot(data=rows, x="epoch", y="accuracy", hue="set", hue_order=order,
                     palette=palette, style="set", style_order=order, dashes=dashes,
                     errorbar=t_band(confidence), legend=False, ax=ax)
        _accuracy_panel(ax, best.loc[best.regime == regime, "best_epoch"], rows.epoch,
                        f"regime: {regime}", first_column=i % ncols == 0)
    handles = _set_handles(order, palette, dashes)
    handles.append(Line2D([], [], **BEST_EPOCH_STYLE))
    labels = _legend_labels(data, order) + ["best epoch M of a split\n(darker: several splits)"]
    _legend_below(fig, handles, labels, "evaluation set", 3)
    fig.suptitle(f"Accuracy of every snapshot, mean and {_band_name(confidence)} over "
                 f"{_splits(_n_splits(data))}")
    return fig


def plot_asr_vs_epoch(table: pd.DataFrame, best: pd.DataFrame | None = None,
                      confidence: float = 0.95):
    """Attack success rate (1 - accuracy) on each adversarial set, per attack and regime.

    With ``best``, each split's best epoch is drawn in its regime's colour.
    """
    _theme()
    data = table[table.eval_set == "adversarial"].assign(asr=lambda d: 1.0 - d.accuracy)
    attacks = list(dict.fromkeys(data.attack))
    regimes = list(dict.fromkeys(table.regime))
    palette = dict(zip(regimes, sns.color_palette("colorblind", len(regimes))))
    fig, axes, ncols = _panels(len(attacks), 4.2, 3.4, max_cols=3, sharey=True)
    for i, (attack, ax) in enumerate(zip(attacks, axes)):
        rows = data[data.attack == attack]
        sns.lineplot(data=rows, x="epoch", y="asr", hue="regime", hue_order=regimes,
                     palette=palette, errorbar=t_band(confidence), legend=False, ax=ax)
        if best is not None:
            for regime in regimes:
                _mark_best_epochs(ax, best.loc[best.regime == regime, "best_epoch"],
                                  palette[regime])
        if len(rows):
            _integer_axis(ax, rows.epoch.min(), rows.epoch.max())
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"attack: {attack}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("attack success rate\n(fraction of AEs, 1 − accuracy)"
                      if i % ncols == 0 else "")
    handles = [Line2D([], [], color=palette[r], lw=2) for r in regimes]
    labels = list(regimes)
    if best is not None:
        handles.append(Line2D([], [], **BEST_EPOCH_STYLE))
        labels.append("best epoch M of a split\n(regime's colour)")
    _legend_below(fig, handles, labels, "regime", 3)
    fig.suptitle("Attack success rate on each adversarial set, "
                 f"mean and {_band_name(confidence)} over {_splits(_n_splits(data))}")
    return fig


def save_figure(fig, *paths) -> None:
    """Write a figure to every path, each atomically, in the format its extension names.

    Rules pass a PNG (shown in the report) and an SVG (vector, for papers).
    SVGs carry no date and fixed element ids, so reruns give identical files.
    """
    from pathlib import Path

    from advfit.runtime.io import atomic_path

    if not paths:
        raise ValueError("save_figure needs at least one path")
    try:
        for path in paths:
            suffix = Path(path).suffix
            fmt = suffix.lstrip(".").lower()
            metadata = {"Date": None} if fmt == "svg" else None
            with matplotlib.rc_context({"svg.hashsalt": "advfit"}):
                with atomic_path(path, suffix=suffix) as tmp:
                    fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight",
                                metadata=metadata)
    finally:
        plt.close(fig)


def _k_axis(ax, ks) -> None:
    ks = sorted(int(k) for k in ks)
    ax.set_xticks(ks)
    if ks:
        ax.set_xlim(ks[0] - 0.5, ks[-1] + 0.5)
    ax.set_xlabel("K (number of neighbours)")


def plot_knn_train_test_vs_k(table: pd.DataFrame, confidence: float = 0.95):
    """K-NN training and test accuracy against K (paper 000 Fig. 7)."""
    _theme()
    data = _with_sets(table[table.eval_set.isin(["train", "test"])])
    order = set_order(data.set)
    palette, dashes = set_palette(order), set_dashes(order)
    fig, ax = plt.subplots(figsize=(6.0, 4.4), layout="constrained")
    sns.lineplot(data=data, x="k", y="accuracy", hue="set", hue_order=order, palette=palette,
                 marker="o", errorbar=t_band(confidence), legend=False, ax=ax)
    _k_axis(ax, data.k.unique())
    low = float(np.nanmin(data.accuracy)) if len(data) else 0.0
    ax.set_ylim(max(-0.02, low - 0.05), 1.02)
    ax.set_ylabel(ACCURACY)
    ax.set_title("K-NN: fitting (train) and generalisation (test)\n"
                 f"mean and {_band_name(confidence)} over {_splits(_n_splits(data))}",
                 fontsize=12)
    _legend_below(fig, _set_handles(order, palette, dashes), order, "evaluation set")
    return fig


def plot_knn_accuracy_vs_k(table: pd.DataFrame, confidence: float = 0.95):
    """K-NN accuracy against K on the test set, fail subset and adversarial sets (Fig. 8)."""
    _theme()
    data = _with_sets(table[table.eval_set != "train"])
    order = set_order(data.set)
    palette, dashes = set_palette(order), set_dashes(order)
    fig, ax = plt.subplots(figsize=(6.5, 4.8), layout="constrained")
    sns.lineplot(data=data, x="k", y="accuracy", hue="set", hue_order=order, palette=palette,
                 style="set", style_order=order, dashes=dashes, marker="o",
                 errorbar=t_band(confidence), legend=False, ax=ax)
    _k_axis(ax, data.k.unique())
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(ACCURACY)
    ax.set_title("K-NN accuracy; fail subset and AEs are 0 at K = Z by construction\n"
                 f"mean and {_band_name(confidence)} over {_splits(_n_splits(data))}",
                 fontsize=12)
    _legend_below(fig, _set_handles(order, palette, dashes), _legend_labels(data, order),
                  "evaluation set", 3)
    return fig


def plot_knn_slope_pvalues(tests: pd.DataFrame):
    """p-values of the slope tests per j, log scale, 95 % and 99 % thresholds (Fig. 9)."""
    _theme()
    fig, ax = plt.subplots(figsize=(6.5, 4.6), layout="constrained")
    data = tests.assign(p_value=pd.to_numeric(tests.p_value, errors="coerce"))
    attacks = sorted(data.attack.unique())
    palette = dict(zip(attacks, set_palette([f"adversarial ({a})" for a in attacks]).values()))
    styles = {"welch": ("o", "-"), "paired": ("s", "--")}
    handles, labels = [], []
    for (attack, test), group in data.groupby(["attack", "test"]):
        group = group.dropna(subset=["p_value"]).sort_values("j")
        if len(group):
            marker, line = styles.get(test, ("^", ":"))
            ax.plot(group.j, group.p_value, marker=marker, ls=line, color=palette[attack])
            handles.append(Line2D([], [], marker=marker, ls=line, color=palette[attack]))
            labels.append(f"{attack}, {test}")
    ax.set_yscale("log")
    defined = data.p_value.dropna()
    low = min(1e-3, float(defined.min()) / 3) if len(defined) else 1e-3
    ax.set_ylim(low, 1.5)
    for level, label in ((0.05, "p = 0.05\n(95 %)"), (0.01, "p = 0.01\n(99 %)")):
        ax.axhline(level, color="grey", ls=":", lw=1.2)
        ax.text(1.01, level, label, transform=ax.get_yaxis_transform(), va="center",
                fontsize=9)
    js = sorted(int(j) for j in data.j.unique())
    ax.set_xticks(js)
    if js:
        ax.set_xlim(js[0] - 0.5, js[-1] + 0.5)
    undefined = int(data.p_value.isna().sum())
    if not len(defined):
        ax.text(0.5, 0.6, f"no p-value: all {len(data)} tests are undefined\n"
                "(infinite or undefined slopes, or zero variance;\n"
                "see knn_slope_tests.csv, column note)", transform=ax.transAxes, ha="center",
                va="center", fontsize=10, bbox={"facecolor": "white", "edgecolor": "0.7"})
    elif undefined:
        ax.set_title(f"{undefined} of {len(data)} tests undefined, not drawn (why: "
                     "knn_slope_tests.csv, column note)", fontsize=9, loc="left")
    ax.set_xlabel(r"$j$ (slope $S_j = A_j\,/\,A_{j+2}$)")
    ax.set_ylabel("p-value (log scale)")
    fig.suptitle("Adversarial vs fail-subset slopes: Welch and paired t-tests", fontsize=12)
    if handles:
        _legend_below(fig, handles, labels, "attack, test", 2)
    return fig


JITTER_SEED = 0


@contextlib.contextmanager
def seeded_global_numpy(seed: int):
    """Run a block with NumPy's global generator seeded, then restore its state.

    seaborn's stripplot draws its jitter from ``np.random`` without a seed, so
    a rerun would move the dots and change the figure's bytes.
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _p_text(row) -> str:
    """``Welch p = 0.012``, or ``n/a`` (delta_tests.csv's note says why)."""
    if row is None or row.p_value != row.p_value:  # no test, or p is NaN
        return "Welch p: n/a"
    return f"Welch p = {row.p_value:.2g}"


def plot_delta_boxes(deltas: pd.DataFrame, tests: pd.DataFrame):
    """ACC(E) - ACC(M) per split for every set, as box plots per regime (paper 000 Figs. 12, 15).

    Sets run down the y axis; each adversarial set's label carries the p-value
    of its Welch test against the test set.
    """
    _theme()
    data = _with_sets(deltas)
    order = set_order(data.set)
    palette = set_palette(order)
    regimes = list(dict.fromkeys(data.regime))
    fig, axes, _ = _panels(len(regimes), 4.6, 0.42 * len(order) + 1.4, sharex=True)
    for regime, ax in zip(regimes, axes):
        rows = data[data.regime == regime]
        sns.boxplot(data=rows, x="delta", y="set", order=order, hue="set", hue_order=order,
                    palette=palette, saturation=0.6, legend=False,
                    showfliers=False, width=0.6, ax=ax)
        with seeded_global_numpy(JITTER_SEED):  # seaborn jitters with np.random's global state
            sns.stripplot(data=rows, x="delta", y="set", order=order, color="black", size=4,
                          jitter=0.15, ax=ax)
        ax.axvline(0, color="grey", lw=1)
        by_attack = {r.attack: r for r in tests[tests.regime == regime].itertuples()}
        labels = [s if not s.startswith("adversarial (") else
                  f"{s}\n{_p_text(by_attack.get(s[len('adversarial ('):-1]))}" for s in order]
        ax.set_yticks(range(len(order)), labels, fontsize=10)
        ax.set_ylabel("")
        ax.set_xlabel("ACC(E) − ACC(M)\n(accuracy, fraction correct)")
        ax.set_title(f"regime: {regime}")
    fig.suptitle("Accuracy gained from the best epoch M to the last epoch E, one dot per "
                 f"split ({_splits(_n_splits(data))})\np: Welch's t-test of each adversarial "
                 "set's deltas against the test set's (n/a: see delta_tests.csv)", fontsize=11)
    return fig


def plot_study_comparison(deltas: pd.DataFrame):
    """ACC(E) - ACC(M) of every set, one panel per set, the studies side by side
    (mean over splits with its 95 % t interval, one dot per split), hue by regime:
    which study's adversarial sets gain most from the best epoch to the last."""
    _theme()
    data = _with_sets(deltas)
    order = set_order(data.set)
    studies = list(dict.fromkeys(data.study))
    regimes = list(dict.fromkeys(data.regime))
    fig, axes, _ = _panels(len(order), 0.9 * len(studies) + 2.6, 3.4, max_cols=3, sharey=True)
    for label, ax in zip(order, axes):
        rows = data[data.set == label]
        sns.pointplot(data=rows, x="study", y="delta", hue="regime", order=studies,
                      hue_order=regimes, errorbar=t_band(), linestyle="none",
                      dodge=0.3 if len(regimes) > 1 else False,  # seaborn divides by levels - 1
                      capsize=0.1, ax=ax, legend=ax is axes[0])
        with seeded_global_numpy(JITTER_SEED):
            sns.stripplot(data=rows, x="study", y="delta", hue="regime", order=studies,
                          hue_order=regimes, dodge=True, size=3, alpha=0.5, legend=False, ax=ax)
        ax.axhline(0, color="grey", lw=1)
        ax.set_title(label)
        ax.set_xlabel("study")
        ax.set_ylabel("ACC(E) − ACC(M)")
    fig.suptitle("Accuracy gained from the best epoch M to the last epoch E, by study\n"
                 "(mean over splits, 95 % t interval; dots: splits)", fontsize=11)
    return fig


def plot_l2_distribution(per_ae: pd.DataFrame):
    """Distribution of the per-AE L2 distances, per attack and regime (paper 000 Fig. 13).

    The bins are shared by all panels; they are logarithmic when the distances
    span more than 1.5 decades (e.g. DeepFool's against FGSM's), so that every
    attack's distribution stays visible.
    """
    import textwrap

    _theme()
    convention = per_ae.l2_convention.iloc[0] if len(per_ae) else "channels"
    attacks = sorted(per_ae.attack.unique())
    colours = set_palette([f"adversarial ({a})" for a in attacks])
    palette = {a: colours[f"adversarial ({a})"] for a in attacks}
    regimes = list(dict.fromkeys(per_ae.regime))
    values = per_ae.l2.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    log = bool(len(values)) and values.min() > 0 and np.log10(values.max() / values.min()) > 1.5
    if log:  # seaborn bins log-scaled data in log10 units
        bins = {"bins": 30, "binrange": (np.log10(values.min()), np.log10(values.max()))}
    elif len(values):
        bins = {"bins": min(30, len(np.histogram_bin_edges(values, bins="auto")) - 1),
                "binrange": (values.min(), values.max())}
    else:
        bins = {}
    fig, axes, ncols = _panels(len(regimes), 4.2, 3.2, sharex=True)
    for i, (regime, ax) in enumerate(zip(regimes, axes)):
        rows = per_ae[per_ae.regime == regime]
        sns.histplot(data=rows, x="l2", hue="attack", hue_order=attacks, palette=palette,
                     element="step", stat="percent", common_norm=False,
                     log_scale=(10 if log else False, False), legend=False, ax=ax, **bins)
        if log:
            ax.set_xlim(values.min() / 1.3, values.max() * 1.3)
        counts = rows.attack.value_counts()
        n_text = "n AEs: " + ", ".join(f"{a} {counts.get(a, 0)}" for a in attacks)
        ax.set_title(f"regime: {regime}\n" + "\n".join(textwrap.wrap(n_text, 42)),
                     fontsize=11)
        ax.set_xlabel(f"L2 distance to the original{' (log scale)' if log else ''}\n"
                      f"(pixel values in [0, 1]; {convention} convention)")
        ax.set_ylabel("% of the attack's AEs" if i % ncols == 0 else "")
    handles = [Patch(facecolor=(*palette[a], 0.3), edgecolor=palette[a]) for a in attacks]
    _legend_below(fig, handles, attacks, "attack")
    fig.suptitle("Distance of each adversarial example to its original, all splits",
                 fontsize=12)
    return fig


METRIC_LABELS = {
    "clever_u": ("CLEVER score (untargeted)", "estimated minimal perturbation\n"
                 "(Lp norm, pixel values in [0, 1])"),
    "loss_sensitivity": ("loss sensitivity", "‖∇ₓ loss‖₂\n(loss per unit of L2)"),
    "empirical_robustness": ("empirical robustness (FGSM)", "smallest successful step\n"
                             "‖δ‖ / ‖x‖ (ratio)"),
}


def plot_robustness_metrics(table: pd.DataFrame):
    """Each metric against epoch per regime: mean over splits of the per-split means ± sd
    (paper 002 Figs. 5, 6, 9, 10)."""
    _theme()
    present = list(dict.fromkeys(table.metric))
    metrics = [m for m in METRIC_LABELS if m in present] + [m for m in present
                                                            if m not in METRIC_LABELS]
    regimes = list(dict.fromkeys(table.regime))
    palette = dict(zip(regimes, sns.color_palette("colorblind", len(regimes))))
    fig, axes, _ = _panels(len(metrics), 3.5, 3.2, max_cols=3)
    for metric, ax in zip(metrics, axes):
        rows = table[table.metric == metric]
        sns.lineplot(data=rows, x="epoch", y="mean", hue="regime", hue_order=regimes,
                     palette=palette, errorbar="sd", marker="o", markersize=5, legend=False,
                     ax=ax)
        title, ylabel = METRIC_LABELS.get(metric, (metric, "value"))
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(ylabel, fontsize=10)
        ax.set_xlabel("epoch")
        if len(rows):
            _integer_axis(ax, rows.epoch.min(), rows.epoch.max())
    handles = [Line2D([], [], color=palette[r], lw=2, marker="o") for r in regimes]
    _legend_below(fig, handles, regimes, "regime", 3)
    points = int(table.n_total.max()) if "n_total" in table and len(table) else 0
    fig.suptitle(f"Robustness metrics of every snapshot: mean over {points} test points, "
                 f"then mean ± sd over {_splits(_n_splits(table))}", fontsize=12)
    return fig
