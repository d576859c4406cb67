"""Plugin attacks: your function, called as ``attack(model, x, y, *, seed, **params)``.

``model`` is the Keras model (it returns logits), ``x`` float32 NHWC images in
[0, 1] (a copy), ``y`` their integer labels; it returns the adversarial images.
The output goes through the built-ins' guards (``guards.finish``).
"""

from __future__ import annotations

import inspect

import numpy as np

from advfit.runtime.plugins import PluginError, load_callable
from advfit.attacks.guards import finish, labels_of


def check_signature(function, params: dict, key: str) -> None:
    """Refuse a function that cannot be called as ``f(model, x, y, seed=..., **params)``."""
    try:
        inspect.signature(function).bind(None, None, None, seed=0, **params)
    except TypeError as error:
        raise PluginError(
            f"config key '{key}': cannot be called as attack(model, x, y, *, seed, "
            f"**params) with params {sorted(params)}: {error}") from None


def run_plugin(function_ref: str, params: dict, model, x: np.ndarray, y: np.ndarray, *,
               seed: int, key: str = "attacks.<name>.function") -> np.ndarray:
    function = load_callable(function_ref, key)
    check_signature(function, params, key)
    x_adv = function(model, np.array(x, dtype=np.float32), labels_of(y), seed=int(seed),
                     **params)
    return finish(function_ref, model, x, x_adv, labels_of(y), None)
