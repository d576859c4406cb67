"""The reverse-Weibull fit of CLEVER, as ART does it, for many targets at once.

ART's ``clever_t`` fits ``scipy.stats.weibull_min.fit(-maxima, c_init,
optimizer=scipy.optimize.fmin)`` once per target class and takes the fitted
location. :func:`weibull_locations` fits every row of a (targets x maxima)
array the same way: SciPy's starting point, SciPy's penalised negative
log-likelihood and ``fmin``'s Nelder-Mead (same simplex, same steps, same
tolerances, same evaluation budget), but run on all targets in *lock step*,
so that one likelihood evaluation is one numpy pass over every target still
running, with x**c and (c - 1) log x taken from one log x, in buffers
allocated once per fit (:class:`Workspace`). CLEVER fits the 9 targets of 32
points at once: ≈ 0.03 s per point (digits LeNet-5, 500 maxima per target)
where 9 separate fits take ≈ 0.15 s and SciPy's ``weibull_min.fit`` ≈ 0.3 s.
Most fits stop at fmin's 600 evaluations without converging, in ART's call
as here (33 of 54 sampled targets).

Not bit-identical to SciPy in the likelihood's last bits (exp(c log x) is not
``pow``'s rounding), but the simplex moves by the same arithmetic and only
the comparisons of likelihoods steer it: the fitted locations come out equal
to SciPy's (tests/test_clever.py asserts 1e-9 relative on fits that converge
and on fits that stop at the budget).
"""

from __future__ import annotations

import numpy as np
from scipy import special

# scipy.optimize.fmin's defaults (xtol, ftol; maxiter = maxfun = 200 x parameters)
# and Nelder-Mead's coefficients (not the adaptive ones).
_XATOL = _FATOL = 1e-4
_RHO, _CHI, _PSI, _SIGMA = 1, 2, 0.5, 0.5
_NONZDELT, _ZDELT = 0.05, 0.00025

_PENALTY = np.log(np.finfo(float).max) * 100  # SciPy's per-point penalty outside the support


def start(data: np.ndarray, c_init: float) -> tuple[float, float, float]:
    """``weibull_min.fit``'s starting point for a given shape guess (method of moments)."""
    c = c_init
    scale = np.sqrt(np.var(data) / (special.gamma(1 + 2 / c) - special.gamma(1 + 1 / c) ** 2))
    loc = np.mean(data) - scale * special.gamma(1 + 1 / c)
    return c, loc, scale


def _negated(maxima: np.ndarray) -> np.ndarray:
    data = -np.asarray(maxima, dtype=np.float64)
    if not np.isfinite(data).all():
        raise ValueError("CLEVER: non-finite gradient norms")
    return data


def weibull_location(maxima: np.ndarray, c_init: float) -> float:
    """ART's location for one target: ``weibull_min.fit(-maxima, c_init, optimizer=fmin)[1]``.

    NaN where SciPy would raise ``FitError`` (a non-positive shape or scale);
    the caller refits.
    """
    return float(weibull_locations(np.ravel(maxima)[np.newaxis], c_init)[0])


def weibull_locations(maxima: np.ndarray, c_init: float) -> np.ndarray:
    """:func:`weibull_location` of every row of ``maxima`` (targets x maxima), in lock step."""
    data = _negated(np.atleast_2d(maxima))
    x0 = np.array([start(row, c_init) for row in data], dtype=np.float64)
    best = nelder_mead_rows(data, x0)
    return np.where((best[:, 0] > 0) & (best[:, 2] > 0), best[:, 1], np.nan)


def weibull_location_scipy(maxima: np.ndarray, c_init: float) -> float:
    """ART's own call, for comparison: ``weibull_min.fit(-maxima, c_init, optimizer=fmin)``."""
    from scipy.optimize import fmin
    from scipy.stats import weibull_min

    _, loc, _ = weibull_min.fit(-np.asarray(maxima, dtype=np.float64), c_init, optimizer=fmin)
    return float(loc)


class Workspace:
    """Buffers for :func:`nnlf_rows` calls of up to ``rows`` x ``n`` points.

    A Nelder-Mead fit evaluates the likelihood hundreds of times on arrays of
    about a megabyte; fresh arrays of that size are mapped and unmapped by
    malloc on every call, which took 60 % of the fit's time.
    """

    def __init__(self, rows: int, n: int):
        self.data, self.log_x, self.power, self.density, self.power_rows = (
            np.empty((rows, n)) for _ in range(5))
        self.outside, self.keep = np.empty((rows, n), bool), np.empty((rows, n), bool)


def nnlf_rows(theta: np.ndarray, data: np.ndarray, work: Workspace | None = None) -> np.ndarray:
    """SciPy's ``weibull_min._penalized_nnlf(theta[k], data[k])`` for every row k.

    ``theta`` (M, 3) holds (shape c, location, scale), ``data`` (M, n). Points
    outside the support [loc, inf) or with a non-finite log-density are left
    out of the sum and cost SciPy's penalty each; a non-positive shape or
    scale gives inf.
    """
    m, n = data.shape
    work = work or Workspace(m, n)
    c, loc, scale = theta[:, 0], theta[:, 1], theta[:, 2]
    log_x, power, outside = work.log_x[:m], work.power[:m], work.outside[:m]
    with np.errstate(all="ignore"):
        np.divide(np.subtract(data, loc[:, None], out=log_x), scale[:, None], out=log_x)  # x
        # below the support, at its edge, or NaN
        np.logical_not(np.greater(log_x, 0, out=outside), out=outside)
        rows_outside = np.flatnonzero(outside.any(axis=1))
        unit = rows_outside[c[rows_outside] == 1]
        edge = log_x[unit] == 0  # x = 0 with c = 1: SciPy keeps it (xlogy(0, 0) = 0)
        # log 1 = 0 in their place: log and exp run ~10x slower on NaN and negatives
        np.copyto(log_x, 1.0, where=outside)
        np.log(log_x, out=log_x)
        np.exp(np.multiply(log_x, c[:, None], out=power), out=power)
        # sum of log c + (c - 1) log x - x**c over the points, from one log x
        out = (-(n * np.log(c) + (c - 1) * np.sum(log_x, axis=1) - np.sum(power, axis=1))
               + n * np.log(scale))
        out[rows_outside] = np.nan
        fallback = np.flatnonzero(~np.isfinite(out))  # some point outside, or an overflow
        if len(fallback):
            out[fallback] = _penalised(theta[fallback], fallback, work, (np.searchsorted(
                fallback, unit), edge))
    out[~((c > 0) & (scale > 0))] = np.inf
    return out


def _penalised(theta, rows, work, edges) -> np.ndarray:
    """:func:`nnlf_rows` point by point, for ``rows`` where some log-density is not finite:
    the finite log-densities summed, SciPy's penalty for each of the others.
    ``edges``: (positions in ``rows``, their points at x = 0) of the rows with c = 1."""
    k, n = len(rows), work.log_x.shape[1]
    c, scale = theta[:, :1], theta[:, 2]
    log_c = np.log(c)
    density, power, keep = work.density[:k], work.power_rows[:k], work.keep[:k]
    np.take(work.log_x, rows, axis=0, out=density)
    np.multiply(density, c - 1, out=density)
    np.add(log_c, density, out=density)
    np.subtract(density, np.take(work.power, rows, axis=0, out=power), out=density)
    np.logical_not(np.take(work.outside, rows, axis=0, out=keep), out=keep)
    at, edge = edges
    if len(at):
        density[at] = np.where(edge, log_c[at], density[at])
        keep[at] |= edge
    keep &= np.isfinite(density)
    n_bad = n - np.count_nonzero(keep, axis=1)
    np.copyto(density, 0.0, where=~keep)
    return -np.sum(density, axis=1) + n_bad * _PENALTY + n * np.log(scale)


class _Budget:
    """fmin's evaluation budget per row: a call past it ends that row's fit."""

    def __init__(self, data: np.ndarray, maxfun: int):
        self.data, self.maxfun = data, maxfun
        self.calls = np.zeros(len(data), dtype=np.int64)
        self.work = Workspace(*data.shape)

    def evaluate(self, rows: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(allowed, values): rows whose budget allows one more call, and their values."""
        allowed = self.calls[rows] < self.maxfun
        values = np.full(len(rows), np.nan)
        if allowed.any():
            taken = rows[allowed]
            data = np.take(self.data, taken, axis=0, out=self.work.data[:len(taken)])
            values[allowed] = nnlf_rows(theta[allowed], data, self.work)
            self.calls[taken] += 1
        return allowed, values


def _sorted(sim: np.ndarray, fsim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(fsim, axis=1)  # per row as fmin's np.argsort of 4 values
    return (np.take_along_axis(sim, order[:, :, None], axis=1),
            np.take_along_axis(fsim, order, axis=1))


def nelder_mead_rows(data: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """``fmin(penalised nnlf, x0[k], args=(data[k],), disp=0)`` for every row k, in lock step."""
    n_rows, n = x0.shape
    maxfun = maxiter = 200 * n
    sim = np.repeat(x0[:, None, :], n + 1, axis=1)
    for k in range(n):
        y = x0[:, k]
        sim[:, k + 1, k] = np.where(y != 0, (1 + _NONZDELT) * y, _ZDELT)
    budget = _Budget(data, maxfun)
    every = np.arange(n_rows)
    fsim = np.stack([budget.evaluate(every, sim[:, v])[1] for v in range(n + 1)], axis=1)
    sim, fsim = _sorted(sim, fsim)
    iterations = np.ones(n_rows, dtype=np.int64)
    running = np.ones(n_rows, dtype=bool)
    while True:
        running &= (budget.calls < maxfun) & (iterations < maxiter)
        converged = ((np.abs(sim[:, 1:] - sim[:, :1]).max(axis=(1, 2)) <= _XATOL)
                     & (np.abs(fsim[:, :1] - fsim[:, 1:]).max(axis=1) <= _FATOL))
        running &= ~converged  # fmin breaks before sorting again
        rows = np.flatnonzero(running)
        if not len(rows):
            return sim[:, 0]
        s, f, done = _iterate(sim[rows], fsim[rows], rows, budget)
        iterations[rows[done]] += 1
        sim[rows], fsim[rows] = _sorted(s, f)


def _iterate(sim, fsim, rows, budget):
    """One Nelder-Mead step of every running row, branch by branch as in fmin.

    Each row needs at most one point after the reflection (the expansion, or
    one of the two contractions), so those are evaluated in one call. Returns
    the new (sim, fsim) and which rows finished the step (a row that ran out
    of budget mid-step keeps what it had changed so far, as fmin does).
    """
    n = sim.shape[2]
    xbar = np.add.reduce(sim[:, :-1], 1) / n
    worst = sim[:, -1].copy()
    xr = (1 + _RHO) * xbar - _RHO * worst
    _, fxr = budget.evaluate(rows, xr)  # the loop's condition left room for this call
    expand = fxr < fsim[:, 0]
    take_r = ~expand & (fxr < fsim[:, -2])
    outside = ~expand & ~take_r & (fxr < fsim[:, -1])
    inside = ~expand & ~take_r & ~outside
    second = np.where(expand[:, None], (1 + _RHO * _CHI) * xbar - _RHO * _CHI * worst,
                      np.where(outside[:, None], (1 + _PSI * _RHO) * xbar - _PSI * _RHO * worst,
                               (1 - _PSI) * xbar + _PSI * worst))
    need = np.flatnonzero(~take_r)
    allowed, f_need = budget.evaluate(rows[need], second[need])
    done = np.ones(len(rows), dtype=bool)
    done[need[~allowed]] = False
    ok = np.zeros(len(rows), dtype=bool)
    ok[need[allowed]] = True
    f2 = np.full(len(rows), np.nan)
    f2[need] = f_need

    take_second = ok & ((expand & (f2 < fxr)) | (outside & (f2 <= fxr))
                        | (inside & (f2 < fsim[:, -1])))
    take_reflection = take_r | (ok & expand & ~take_second)
    shrink = ok & ~expand & ~take_second
    sim[take_second, -1], fsim[take_second, -1] = second[take_second], f2[take_second]
    sim[take_reflection, -1], fsim[take_reflection, -1] = xr[take_reflection], fxr[take_reflection]
    for j in range(1, n + 1):
        if not shrink.any():
            break
        sim[shrink, j] = sim[shrink, 0] + _SIGMA * (sim[shrink, j] - sim[shrink, 0])
        idx = np.flatnonzero(shrink)
        allowed, fj = budget.evaluate(rows[idx], sim[idx, j])
        fsim[idx[allowed], j] = fj[allowed]
        done[idx[~allowed]] = False
        shrink[idx[~allowed]] = False  # fmin stops this row's shrink at the failed call
    return sim, fsim, done
