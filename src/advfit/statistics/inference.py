"""Intervals, paired tests, effect sizes and power: pure functions on numbers.

Everything here takes plain numbers or arrays and returns plain numbers, so
that each function can be checked against scipy, statsmodels or a worked
example (tests/test_statistics.py). Undefined results are NaN together with a
note in words, never an exception and never a silent number.
"""

from __future__ import annotations

import math

import numpy as np

ALTERNATIVES = ("two-sided", "greater", "less")


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (NaNs dropped); NaN below 2 values.

    Used across splits: each split's accuracy is one observation. A zero
    spread gives the zero-width interval [mean, mean].
    """
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan, math.nan
    mean = float(values.mean())
    sem = float(values.std(ddof=1)) / math.sqrt(len(values))
    if sem == 0:
        return mean, mean
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def wilson_interval(n_correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; NaN for an empty set.

    Used within a split: the accuracy of one snapshot on n samples. Wilson,
    unlike the normal (Wald) interval, stays inside [0, 1] and keeps close to
    its nominal coverage at accuracies near 0 or 1 (the adversarial sets).
    """
    from scipy import stats

    if n == 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(n_correct), int(n)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_mean_interval(values, confidence: float = 0.95, seed: int = 0,
                            n_resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, seeded; NaN below 2 finite values.

    Percentile rather than BCa: BCa is undefined for constant samples (an
    L-infinity that equals eps for every AE), where the percentile interval
    is the honest [value, value].
    """
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan, math.nan
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence,
                             n_resamples=n_resamples, method="percentile", batch=200,
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def discordant_counts(correct_a, correct_b) -> tuple[int, int]:
    """(gained, lost): samples wrong at a and right at b, and right at a and wrong at b."""
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"paired vectors differ in shape: {correct_a.shape} vs {correct_b.shape}")
    return int(np.sum(~correct_a & correct_b)), int(np.sum(correct_a & ~correct_b))


def mcnemar_exact(gained: int, lost: int, alternative: str = "two-sided") -> tuple[float, str]:
    """Exact McNemar test: p-value and a note (empty when defined).

    Under the null hypothesis (same accuracy at both epochs) each discordant
    sample is equally likely to be gained or lost, so ``gained`` is
    Binomial(gained + lost, 1/2). ``greater``: accuracy higher at b than at a.
    """
    from scipy import stats

    _check_alternative(alternative)
    if gained + lost == 0:
        return math.nan, "no discordant pairs: both epochs classify every sample alike"
    return float(stats.binomtest(gained, gained + lost, 0.5, alternative=alternative).pvalue), ""


def paired_odds_ratio(gained: int, lost: int, confidence: float = 0.95):
    """Conditional odds ratio gained / lost of matched pairs and its exact interval.

    The interval maps the Clopper-Pearson interval of gained / (gained + lost)
    through p / (1 - p). Returns (ratio, low, high); a ratio with lost = 0 is
    infinite, and no discordant pair gives NaN.
    """
    from scipy import stats

    n = gained + lost
    if n == 0:
        return math.nan, math.nan, math.nan
    ci = stats.binomtest(gained, n).proportion_ci(confidence, method="exact")
    return _odds(gained / n), _odds(ci.low), _odds(ci.high)


def _odds(p: float) -> float:
    return math.inf if p >= 1 else float(p / (1 - p))


def pooled_mcnemar(tables: list[tuple[int, int]], alternative: str = "two-sided"):
    """Exact McNemar on the discordant pairs summed over splits.

    This is the exact form of the Cochran-Mantel-Haenszel test stratified by
    matched pair (every sample of every split its own 2x2 stratum): only
    discordant strata carry information and the CMH statistic reduces to
    McNemar's on the summed counts (Agresti, Categorical Data Analysis, 3rd
    ed., §11.1.4). Returns (gained, lost, p, note).
    """
    gained = sum(g for g, _ in tables)
    lost = sum(c for _, c in tables)
    p, note = mcnemar_exact(gained, lost, alternative)
    return gained, lost, p, note


def fisher_combination(p_values) -> float:
    """Fisher's combination of independent p-values (scipy); NaN if none is defined."""
    from scipy import stats

    p = np.asarray(p_values, dtype=np.float64)
    p = p[np.isfinite(p)]
    if len(p) == 0:
        return math.nan
    return float(stats.combine_pvalues(p, method="fisher").pvalue)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (statsmodels); NaN inputs stay NaN and do not count."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    defined = np.isfinite(p)
    if defined.any():
        out[defined] = multipletests(p[defined], method="holm")[1]
    return out


def welch_effect(a, b, confidence: float = 0.95, alternative: str = "two-sided") -> dict:
    """Welch's t-test of mean(a) - mean(b) with its interval, Cohen's d and the runs needed.

    ``runs_needed``: the number of runs (splits) per sample at which Welch's
    test would reach power 0.8 at alpha 0.05 for the observed Cohen's d
    (statsmodels' TTestIndPower, equal sample sizes). ``power_note`` says in
    words why it is undefined.
    """
    from scipy import stats

    _check_alternative(alternative)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = {"difference": math.nan, "difference_low": math.nan, "difference_high": math.nan,
           "cohens_d": math.nan, "runs_needed": math.nan, "power_note": ""}
    if min(len(a), len(b)) < 2:
        out["power_note"] = "fewer than 2 splits in a sample"
        return out
    out["difference"] = float(a.mean() - b.mean())
    pooled_sd = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if pooled_sd == 0:
        out["power_note"] = "zero variance in both samples: effect size undefined"
        return out
    result = stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
    ci = result.confidence_interval(confidence)
    out["difference_low"], out["difference_high"] = float(ci.low), float(ci.high)
    out["cohens_d"] = out["difference"] / pooled_sd
    out["runs_needed"], out["power_note"] = runs_needed(out["cohens_d"], alternative)
    return out


def runs_needed(cohens_d: float, alternative: str = "two-sided", alpha: float = 0.05,
                power: float = 0.8) -> tuple[float, str]:
    """Runs per sample for a two-sample t-test to reach ``power`` at ``alpha``; (n, note)."""
    from statsmodels.stats.power import TTestIndPower

    if cohens_d == 0:
        return math.nan, "observed effect is zero: no number of runs detects it"
    side = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}[alternative]
    if (side == "larger" and cohens_d < 0) or (side == "smaller" and cohens_d > 0):
        return math.nan, "observed effect points against the one-sided alternative"
    analysis, side = TTestIndPower(), "two-sided" if side == "two-sided" else "larger"
    # Welch needs at least 2 runs per sample; a large effect reaches the power there
    # (and statsmodels' root finder does not converge below it).
    if analysis.power(abs(cohens_d), 2, alpha, ratio=1.0, alternative=side) >= power:
        return 2.0, ""
    n = float(np.squeeze(analysis.solve_power(effect_size=abs(cohens_d), alpha=alpha,
                                              power=power, ratio=1.0, alternative=side)))
    if not math.isfinite(n):
        return math.nan, "statsmodels' power solver did not converge"
    return float(math.ceil(n)), ""


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, not {alternative!r}")
