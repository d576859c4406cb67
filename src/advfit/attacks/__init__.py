"""Attacks: one pure function per attack, arrays in, arrays out.

Each takes a Keras model returning logits, images ``x`` (float32 NHWC) in
[0, 1] and their true labels ``y``, plus the attack's parameters as keywords,
and returns the adversarial images (same shape, float32, in [0, 1]).
Untargeted by default: the attack pushes away from ``y``. Attacks whose
algorithm has a targeted form take ``y_target`` (one target class per image)
and then push towards it instead.

Where things live:

- ``params``: ``Param`` (a parameter's type, range, default, papers' value) and
  ``check_params``, the one place defaults are applied;
- ``registry``: the ``@attack`` decorator by which each attack declares its
  parameters next to its function;
- ``guards``: the checks every attack's output passes (shape, dtype, range,
  NaN) and the success-rate log line;
- ``batching``: traced steps over batches, chunked library calls;
- ``counting``: ``CountingModel``, exact forward and backward image-pass counts
  (the white-box view's cost columns);
- ``cleverhans_attacks``: ``fgsm``, ``pgd``, ``bim`` (cleverhans 4.0.0);
- ``art_adapter``: the ART classifier wrapper (also used by ``advfit.evaluation.metrics``);
- ``art_attacks``: ``fgsm_art``, ``pgd_art``, ``cw_l2_art``, ``deepfool``,
  ``hopskipjump`` (ART 1.20.1);
- ``carlini_wagner``: ``cw_l2``, our own Carlini-Wagner L2 (see its docstring for why);
- ``apgd``: ``apgd_ce``, ``apgd_dlr``, ``apgd_t`` (Croce & Hein 2020, AutoAttack's APGD);
- ``fab``: ``fab_t`` (targeted FAB) and ``fab_minimal_norm``; ``square``: ``square``
  (Andriushchenko et al. 2020); both ported from AutoAttack;
- ``autoattack``: ``autoattack``, the ensemble of those four, worst case per point;
- ``spec``: ``AttackSpec``, an attack's config entry normalised once;
- ``plugin``: your own attack function, from the config, each call time-limited;
- ``adversarial_sets``: the protocol's adversarial sets (sources, targets, AEs
  kept only where they fool the best snapshot, the fail subset).

May import ``advfit.runtime`` only: attacks work on any Keras model.

Random attacks (``pgd``'s start, ``pgd_art``'s start, ``hopskipjump``, the
APGD starts, ``square``, ``fab_t`` with restarts) draw
from TensorFlow's and NumPy's global generators, which the jobs seed
(``runtime.configure``), so a rerun with the same seed gives the same
examples; a plugin gets the job's seed as ``seed``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from advfit.attacks import art_attacks, cleverhans_attacks
from advfit.attacks.apgd import apgd_ce, apgd_dlr, apgd_t
from advfit.attacks.art_adapter import art_classifier, quiet_art
from advfit.attacks.art_attacks import cw_l2_art, deepfool, fgsm_art, hopskipjump, pgd_art
from advfit.attacks.cleverhans_attacks import bim, fgsm, pgd
from advfit.attacks.autoattack import autoattack
from advfit.attacks.carlini_wagner import cw_l2
from advfit.attacks.fab import fab_t
from advfit.attacks.guards import CLIP_MAX, CLIP_MIN, finish
from advfit.attacks.params import REQUIRED, Param
from advfit.attacks.plugin import run_plugin
from advfit.attacks.registry import REGISTERED
from advfit.attacks.square import square
from advfit.attacks.spec import PLUGIN, AttackSpec

# The order of the schema's and docs/attacks.md's attack lists.
ATTACKS: dict[str, Callable] = {
    name: REGISTERED[name]
    for name in ("fgsm", "fgsm_art", "pgd", "pgd_art", "apgd_ce", "apgd_dlr", "apgd_t", "bim",
                 "cw_l2", "cw_l2_art", "deepfool", "hopskipjump", "fab_t", "square", "autoattack")
}
ATTACK_PARAMS: dict[str, dict[str, Param]] = {n: a.info.params for n, a in ATTACKS.items()}
ATTACK_DEFAULTS: dict[str, dict[str, Any]] = {n: a.info.defaults() for n, a in ATTACKS.items()}
TARGETED = tuple(name for name, a in ATTACKS.items() if a.info.targeted)


def run_attack(method: str, model, x: np.ndarray, y: np.ndarray, params: dict,
               y_target: np.ndarray | None = None) -> np.ndarray:
    """Run built-in attack ``method`` with ``params`` over its defaults."""
    try:
        attack = ATTACKS[method]
    except KeyError:
        raise ValueError(f"unknown attack method {method!r}; known: {sorted(ATTACKS)}") from None
    return attack(model, x, y, y_target=y_target, **params)


def craft(spec: AttackSpec, model, x: np.ndarray, y: np.ndarray, *, seed: int,
          y_target: np.ndarray | None = None) -> np.ndarray:
    """Run the attack a config entry describes: a built-in one or a plugin."""
    if spec.method == PLUGIN:
        if y_target is not None:
            raise ValueError(f"attack {spec.name}: plugin attacks are untargeted")
        return run_plugin(spec.function, spec.params, model, x, y, seed=seed,
                          key=f"attacks.{spec.name}.function", timeout_s=spec.timeout_s)
    return run_attack(spec.method, model, x, y, spec.params, y_target=y_target)


__all__ = [
    "ATTACKS", "ATTACK_DEFAULTS", "ATTACK_PARAMS", "CLIP_MAX", "CLIP_MIN", "PLUGIN", "REQUIRED",
    "TARGETED", "AttackSpec", "Param", "apgd_ce", "apgd_dlr", "apgd_t", "art_attacks",
    "art_classifier", "autoattack", "bim", "cleverhans_attacks", "craft", "cw_l2", "cw_l2_art",
    "deepfool", "fab_t", "fgsm", "fgsm_art", "finish", "hopskipjump", "pgd", "pgd_art",
    "quiet_art", "run_attack", "square",
]
