"""Plugin attacks: your function, called as ``attack(model, x, y, *, seed, **params)``.

``model`` is the Keras model (it returns logits), ``x`` float32 NHWC images in
[0, 1] (a copy), ``y`` their integer labels; it returns the adversarial images.
The output goes through the built-ins' guards (``guards.finish``); each call is
bounded by ``limits.plugin_timeout_s`` (``runtime.plugins.time_limit``).
"""

from __future__ import annotations

import inspect

import numpy as np

from advfit.attacks.guards import BadOutput, finish, labels_of
from advfit.runtime.plugins import PluginError, load_callable, time_limit, timeout_message


def check_signature(function, params: dict, key: str) -> None:
    """Refuse a function that cannot be called as ``f(model, x, y, seed=..., **params)``."""
    try:
        inspect.signature(function).bind(None, None, None, seed=0, **params)
    except TypeError as error:
        raise PluginError(
            f"config key '{key}': cannot be called as attack(model, x, y, *, seed, "
            f"**params) with params {sorted(params)}: {error}") from None


def run_plugin(function_ref: str, params: dict, model, x: np.ndarray, y: np.ndarray, *,
               seed: int, key: str = "attacks.<name>.function",
               timeout_s: float | None = None) -> np.ndarray:
    """Call the plugin once, stopped after ``timeout_s`` (``PluginTimeout``); its
    output checked by the guards (``BadOutput`` naming ``key``)."""
    function = load_callable(function_ref, key)
    check_signature(function, params, key)
    with time_limit(timeout_s, timeout_message(key, function_ref, timeout_s or 0)):
        x_adv = function(model, np.array(x, dtype=np.float32), labels_of(y), seed=int(seed),
                         **params)
    try:
        return finish(function_ref, model, x, x_adv, labels_of(y), None)
    except BadOutput as error:
        raise BadOutput(f"config key '{key}': {error}") from None
