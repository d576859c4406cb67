"""The attack registry: each attack registers itself with its parameters.

``@attack(name, targeted=..., params={...})`` declares an attack's parameters
(``params.Param``: type, range, default, the papers' value) next to its
function, whose keywords carry no defaults: the wrapper fills them in from the
declaration and names unknown or missing ones (``params.check_params``), so
every default is written once. The config schema and docs/attacks.md's table are
generated from the same declarations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from advfit.attacks.params import Param, check_params

# name -> the wrapped attack, in registration order (ordered in __init__)
REGISTERED: dict[str, Callable] = {}


@dataclass(frozen=True)
class AttackInfo:
    name: str
    params: dict[str, Param]
    targeted: bool  # the algorithm has a targeted form: it accepts ``y_target``

    def defaults(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.params.items() if not p.required}


def attack(name: str, *, targeted: bool, params: dict[str, Param]):
    """Register ``fn(model, x, y, *, <params>[, y_target])`` as attack ``name``."""
    info = AttackInfo(name, dict(params), targeted)

    def register(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(model, x: np.ndarray, y: np.ndarray, *, y_target: np.ndarray | None = None,
                **given) -> np.ndarray:
            full = check_params(name, info.params, given)
            if y_target is None:
                return fn(model, x, y, **full)
            if not info.targeted:
                raise ValueError(f"{name} has no targeted form")
            return fn(model, x, y, y_target=y_target, **full)

        run.info = info
        REGISTERED[name] = run
        return run

    return register
