"""Attack and metric parameters, described once: type, range, default, the papers' value.

An attack declares its parameters next to its function (``registry.attack``);
the defaults are read from here at call time, the config schema is generated
from here (``advfit.registry_schema``) and docs/attacks.md's table follows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REQUIRED = object()  # marks a parameter without a default


@dataclass(frozen=True)
class Param:
    """One attack or metric parameter, in JSON-schema terms.

    ``type`` is a JSON-schema type name or a tuple of them; ``minimum`` and
    ``maximum`` are inclusive unless ``exclusive_minimum``; ``paper`` is the
    paper-faithful value: what the papers state or, where they are silent,
    the default of the implementation they most likely used (ART, whose
    metrics paper 002 reports; C&W's reference code for ``cw_l2``); ``None``
    where neither says. ``note`` tells which.
    """

    type: str | tuple[str, ...]
    default: Any = REQUIRED
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    enum: tuple | None = None
    paper: Any = None
    note: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


NORM = Param(("string", "integer"), "inf", enum=("inf", 2),
             note="'inf' (L-infinity) or 2 (L2)")


def batch(default: int) -> Param:
    return Param("integer", default, minimum=1, note="images per call: memory and log granularity")


def positive(paper=None, note: str = "") -> Param:
    """A required strictly positive number (a budget or step size)."""
    return Param("number", REQUIRED, minimum=0.0, exclusive_minimum=True, paper=paper, note=note)


def check_params(method: str, spec: dict[str, Param], params: dict) -> dict:
    """``params`` over the declared defaults; unknown or missing names raise ValueError.

    The one place where an attack's defaults are applied (as ART's
    ``_check_params``): the function bodies declare none.
    """
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ValueError(f"{method}: unknown parameter(s) {unknown}; known: {sorted(spec)}")
    missing = sorted(name for name, p in spec.items() if p.required and name not in params)
    if missing:
        raise ValueError(f"{method}: missing parameter(s) {missing}")
    return {**{name: p.default for name, p in spec.items() if not p.required}, **params}
