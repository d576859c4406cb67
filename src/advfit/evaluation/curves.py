"""Robustness curves (issue 23): robust accuracy against the budget eps, per snapshot.

One run of a minimal-norm attack gives, per point, the smallest perturbation
it found that fools the snapshot (0 where the snapshot is wrong already, inf
where none was found). The robust accuracy at any eps is then the share of
points whose minimal norm exceeds eps, so a whole curve costs one attack run
instead of one fixed-eps run per budget. The curve can only overestimate
robustness (the attack may miss smaller perturbations); a fixed-eps attack at
its own eps (the ``check``) on the same points says by how much.

Norms are those the attacks bound: L-inf, or L2 over every value of the image
(``l2_convention`` "channels"), in pixel values scaled to [0, 1].
"""

from __future__ import annotations

import numpy as np

# the minimal-norm attacks and the norms each supports (deepfool and cw_l2 are L2 attacks)
MINIMAL_NORM_ATTACKS = {"fab_t": ("inf", 2), "deepfool": (2,), "cw_l2": (2,)}


def _norm_key(norm):
    """The config's norm as one value: "inf" or 2 (YAML may give "2" or 2)."""
    return "inf" if str(norm) == "inf" else 2


def minimal_norms(model, x: np.ndarray, y: np.ndarray, attack: str, norm, params: dict,
                  batch_size: int) -> np.ndarray:
    """Per point, the smallest perturbation ``attack`` finds that fools ``model`` (float64).

    0 where ``model`` misclassifies the clean point, inf where no AE was found.
    fab_t searches the minimal norm itself (every target class, no budget);
    deepfool and cw_l2 are run once and the L2 norm of each AE that fools the
    model is taken (they minimise it by design).
    """
    norm = _norm_key(norm)
    if attack not in MINIMAL_NORM_ATTACKS:
        raise ValueError(f"unknown minimal-norm attack {attack!r}; "
                         f"known: {', '.join(MINIMAL_NORM_ATTACKS)}")
    if norm not in MINIMAL_NORM_ATTACKS[attack]:
        raise ValueError(f"{attack} is an L2 attack: it has no minimal L-inf norm")
    if attack == "fab_t":
        from advfit.attacks.fab import fab_minimal_norm

        keywords = {"batch_size": batch_size, **params, "norm": norm}
        return fab_minimal_norm(model, x, y, **keywords).astype(np.float64)
    return _norms_of_aes(model, x, y, attack, params, batch_size)


def _norms_of_aes(model, x, y, attack: str, params: dict, batch_size: int) -> np.ndarray:
    """L2 norms of the AEs that fool the model, attacking the correctly classified points only
    (DeepFool would move the others across their boundary too)."""
    from advfit.attacks import run_attack
    from advfit.attacks.batching import predict_logits, traced_forward
    from advfit.evaluation.distances import perturbation_norms

    forward = traced_forward(model)
    y = np.asarray(y, np.int64)
    correct = np.argmax(predict_logits(forward, x, batch_size), axis=1) == y
    norms = np.where(correct, np.inf, 0.0)
    todo = np.flatnonzero(correct)
    if len(todo) == 0:
        return norms
    x_adv = np.asarray(run_attack(attack, model, x[todo], y[todo], dict(params)), np.float32)
    fooled = np.argmax(predict_logits(forward, x_adv, batch_size), axis=1) != y[todo]
    sizes = perturbation_norms(x_adv, x[todo], "channels")["l2"]
    norms[todo] = np.where(fooled, sizes, np.inf)
    return norms


def robust_at(norms: np.ndarray, eps: float) -> np.ndarray:
    """Per point: still robust at budget ``eps``, i.e. no AE of norm <= eps was found
    (an AE counts at eps when its norm is <= eps, as fab_t counts it)."""
    return np.asarray(norms, np.float64) > float(eps)


def curve_rows(norms: np.ndarray, eps_grid, confidence: float = 0.95) -> list[dict]:
    """One row per eps: robust accuracy (share of norms > eps) and its Wilson interval
    within the points, as the white-box rows give theirs."""
    from advfit.statistics.inference import wilson_interval

    norms = np.asarray(norms, np.float64)
    if np.isnan(norms).any():
        raise ValueError("minimal norms must not be NaN (inf: no AE found)")
    n = len(norms)
    rows = []
    for eps in eps_grid:
        n_robust = int(robust_at(norms, eps).sum())
        low, high = wilson_interval(n_robust, n, confidence)
        rows.append({"eps": float(eps), "n": n, "n_robust": n_robust,
                     "robust_accuracy": n_robust / n if n else float("nan"),
                     "wilson_low": low, "wilson_high": high, "confidence": confidence})
    return rows


def check_columns(norms: np.ndarray, check_robust: np.ndarray | None, name: str | None,
                  eps: float | None) -> dict:
    """The cross-check next to a snapshot's curve: the fixed-eps attack's robust accuracy
    on the same points, and the curve's at that eps (empty without a check attack).

    The curve should not lie above the check by much: a fixed-eps attack that
    finds more AEs at eps shows the minimal-norm attack missed some.
    """
    if name is None:
        return {"check_attack": "", "check_eps": float("nan"),
                "check_robust_accuracy": float("nan"), "curve_at_check_eps": float("nan")}
    check_robust = np.asarray(check_robust, bool)
    return {"check_attack": name, "check_eps": float(eps),
            "check_robust_accuracy": float(check_robust.mean()) if len(check_robust) else
            float("nan"),
            "curve_at_check_eps": float(robust_at(norms, eps).mean()) if len(norms) else
            float("nan")}
