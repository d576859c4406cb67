"""AutoAttack (Croce & Hein 2020): the parameter-free ensemble as one attack name.

The attacks run in order, each only on the points that every earlier one left
correctly classified, and each point keeps the AE of the attack that broke it:
the point-wise worst case, AutoAttack's robust accuracy. Versions, as
``autoattack.AutoAttack(version=...)`` sets them up:

- ``standard``: APGD-CE (1 restart), APGD-T (9 target classes), FAB-T
  (9 target classes), Square (5000 queries), each 100 iterations;
- ``plus``: APGD-CE and APGD-DLR (5 restarts each), FAB-T (5 restarts),
  Square (5000 queries), APGD-T, FAB-T. AutoAttack's plus runs untargeted FAB
  (5 restarts) where this runs FAB-T with 5 restarts: advfit has no
  untargeted FAB;
- ``custom``: the names in ``attacks``, in that order, with the standard
  settings.

:func:`run_autoattack` also says, for every point, which attack broke it
(``clean`` where the model misclassifies the image itself, ``""`` where none
did) and how long each attack took; the registered ``autoattack`` logs both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from advfit.attacks.apgd import apgd_ce, apgd_dlr, apgd_t
from advfit.attacks.fab import fab_t
from advfit.attacks.batching import predict_logits, traced_forward
from advfit.attacks.guards import finish, labels_of
from advfit.attacks.params import NORM, Param, batch, positive
from advfit.attacks.registry import attack
from advfit.attacks.square import square

log = logging.getLogger("advfit")

MEMBERS = {"apgd_ce": apgd_ce, "apgd_dlr": apgd_dlr, "apgd_t": apgd_t, "fab_t": fab_t,
           "square": square}
CLEAN = "clean"  # broken_by of a point the model misclassifies unattacked
VERSIONS = ("standard", "plus", "custom")


@dataclass
class AutoAttackResult:
    x_adv: np.ndarray
    broken_by: np.ndarray  # per point: the member that broke it, CLEAN, or "" (robust)
    seconds: dict = field(default_factory=dict)  # per member, wall time

    @property
    def robust_accuracy(self) -> float:
        return float(np.mean(self.broken_by == "")) if len(self.broken_by) else float("nan")


def members(version: str, attacks: list[str], *, nb_iter: int, n_target_classes: int,
            n_queries: int, n_classes: int) -> list[tuple[str, dict]]:
    """(member, its parameters) in the order they run, for ``version``."""
    targets = max(1, min(n_target_classes, n_classes - 1))
    base = {"apgd_ce": {"nb_iter": nb_iter, "restarts": 1},
            "apgd_dlr": {"nb_iter": nb_iter, "restarts": 1},
            "apgd_t": {"nb_iter": nb_iter, "n_target_classes": targets, "restarts": 1},
            "fab_t": {"nb_iter": nb_iter, "n_target_classes": targets, "restarts": 1},
            "square": {"n_queries": n_queries, "restarts": 1}}
    if version == "standard":
        return [(name, base[name]) for name in ("apgd_ce", "apgd_t", "fab_t", "square")]
    if version == "plus":
        five = {"restarts": 5}
        return [("apgd_ce", {**base["apgd_ce"], **five}), ("apgd_dlr", {**base["apgd_dlr"], **five}),
                ("fab_t", {**base["fab_t"], **five}), ("square", base["square"]),
                ("apgd_t", base["apgd_t"]), ("fab_t", base["fab_t"])]
    if version != "custom":
        raise ValueError(f"autoattack: version {version!r} is not one of {VERSIONS}")
    unknown = [name for name in attacks if name not in MEMBERS]
    if unknown or not attacks:
        raise ValueError(f"autoattack: version custom needs `attacks`, a list of "
                         f"{sorted(MEMBERS)}; got {attacks!r}")
    return [(name, base[name]) for name in attacks]


def run_autoattack(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, version: str,
                   attacks: list[str], nb_iter: int, n_target_classes: int, n_queries: int,
                   batch_size: int) -> AutoAttackResult:
    """The ensemble on ``x``: each member on the points still robust, worst case kept."""
    y = labels_of(y)
    n_classes = int(model.output_shape[-1])
    plan = members(version, list(attacks), nb_iter=nb_iter, n_target_classes=n_target_classes,
                   n_queries=n_queries, n_classes=n_classes)
    forward = traced_forward(model)  # traced once per model: no predict() pipeline per member

    def predicted(images):
        return np.argmax(predict_logits(forward, images, batch_size), axis=1)

    x_adv = np.array(x, dtype=np.float32, copy=True)
    broken_by = np.full(len(y), "", dtype=object)
    broken_by[predicted(x) != y] = CLEAN
    seconds: dict[str, float] = {}
    for i, (name, params) in enumerate(plan):
        robust = np.flatnonzero(broken_by == "")
        if robust.size == 0:
            break
        started = time.perf_counter()
        adv = MEMBERS[name](model, x[robust], y[robust], eps=eps, norm=norm,
                            batch_size=batch_size, **params)
        label = name if name not in seconds else f"{name}#{i}"
        seconds[label] = time.perf_counter() - started
        fooled = predicted(adv) != y[robust]
        # Robust points keep the first member's output (APGD-CE's highest-loss iterate).
        keep = fooled if i else np.ones_like(fooled)
        x_adv[robust[keep]] = adv[keep]
        broken_by[robust[fooled]] = label
        log.info("autoattack: %s broke %d of %d robust points (%.1f s); robust accuracy %.4f",
                 label, fooled.sum(), robust.size, seconds[label], np.mean(broken_by == ""))
    return AutoAttackResult(x_adv, broken_by.astype(str), seconds)


@attack("autoattack", targeted=False, params={
    "eps": positive(note="AutoAttack's CIFAR-10 L-inf 8/255, L2 0.5; MNIST L-inf 0.3"),
    "norm": NORM,
    "version": Param("string", "standard", enum=VERSIONS,
                     note="standard (APGD-CE, APGD-T, FAB-T, Square), plus, or custom"),
    "attacks": Param("array", [], note="custom: members in order, from apgd_ce, apgd_dlr, "
                                        "apgd_t, fab_t, square"),
    "nb_iter": Param("integer", 100, minimum=1, note="iterations of APGD and FAB members"),
    "n_target_classes": Param("integer", 9, minimum=1,
                              note="targets of APGD-T and FAB-T (at most classes - 1)"),
    "n_queries": Param("integer", 5000, minimum=1, note="Square's query budget"),
    "batch_size": batch(256),
})
def autoattack(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, version: str,
               attacks: list, nb_iter: int, n_target_classes: int, n_queries: int,
               batch_size: int) -> np.ndarray:
    """AutoAttack's ensemble (Croce & Hein 2020): the point-wise worst case of its members."""
    result = run_autoattack(model, x, y, eps=eps, norm=norm, version=version, attacks=attacks,
                            nb_iter=nb_iter, n_target_classes=n_target_classes,
                            n_queries=n_queries, batch_size=batch_size)
    counts = {name: int(np.sum(result.broken_by == name)) for name in result.seconds}
    log.info("autoattack (%s): broken by %s; %d misclassified clean; robust accuracy %.4f",
             version, counts, int(np.sum(result.broken_by == CLEAN)), result.robust_accuracy)
    return finish("autoattack", model, x, result.x_adv, labels_of(y), None)
