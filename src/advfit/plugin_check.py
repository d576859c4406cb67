"""Checks of the config's custom model and plugin attacks, before any job runs.

The cheap part (references well formed, files there) runs in the scheduler;
the rest needs TensorFlow (~5 s to import), so it runs once in a child
process, on the CPU, only when the config has a custom model or a plugin
attack: the scheduler never imports TensorFlow nor takes a GPU, and the
default run pays nothing. Nothing is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

MAX_PROBE_SIZE = 1024  # the largest square input tried when looking for the minimum
CHECK_TIMEOUT_S = 600


def plugin_problems(config: dict, image_shape, n_classes: int) -> list[str]:
    from advfit.attacks.spec import PLUGIN
    from advfit.models.architectures import BUILDER_KEY, CUSTOM
    from advfit.runtime.plugins import PluginError, source_path

    request = {"model": None, "attacks": {}, "input_shape": list(image_shape),
               "n_classes": int(n_classes)}
    problems = []
    if config["model"]["name"] == CUSTOM:
        try:
            source_path(config["model"]["builder"], BUILDER_KEY)
            request["model"] = config["model"]
        except PluginError as error:
            problems.append(str(error))
    for name, entry in config["attacks"].items():
        if entry.get("method") == PLUGIN:
            try:
                source_path(entry["function"], f"attacks.{name}.function")
                request["attacks"][name] = entry
            except PluginError as error:
                problems.append(str(error))
    if request["model"] or request["attacks"]:
        problems += _run_child(request)
    return problems


def _run_child(request: dict) -> list[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "advfit.plugin_check"], input=json.dumps(request),
                          capture_output=True, text=True, env=env, timeout=CHECK_TIMEOUT_S)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return [f"checking the custom model and plugin attacks failed: {done.stderr[-2000:]}"]
    return json.loads(lines[-1])


def check(request: dict) -> list[str]:
    problems = []
    if request["model"]:
        problems += model_problems(request["model"], tuple(request["input_shape"]),
                                   request["n_classes"])
    for name, entry in request["attacks"].items():
        problems += attack_problems(name, entry)
    return problems


def model_problems(spec: dict, input_shape: tuple, n_classes: int) -> list[str]:
    import numpy as np

    from advfit.models.architectures import BUILDER_KEY, build_custom
    from advfit.runtime.plugins import PluginError, load_callable

    try:
        builder = load_callable(spec["builder"], BUILDER_KEY)
    except PluginError as error:
        return [str(error)]
    params = spec.get("params") or {}
    try:
        model = build_custom(spec, input_shape, n_classes)
    except PluginError as error:
        if _builds(builder, input_shape, n_classes, params):
            return [str(error)]  # not a matter of size
        minimum = smallest_input(builder, input_shape, n_classes, params)
        if minimum is None:
            return [str(error)]
        return [f"config key '{BUILDER_KEY}': {spec['builder']} needs inputs of at least "
                f"{minimum}x{minimum} pixels, the data has {input_shape[0]}x{input_shape[1]}; "
                f"upsample inside the model (as lenet5 does) or use larger images"]
    x = np.random.default_rng(0).uniform(size=(4, *input_shape)).astype(np.float32)
    out = np.asarray(model(x, training=False))
    if np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        return [f"config key '{BUILDER_KEY}': {spec['builder']} outputs probabilities (rows "
                f"sum to 1); return logits instead: the training loss and every attack expect "
                f"logits"]
    return []


def _builds(builder, input_shape, n_classes, params) -> bool:
    import keras

    try:
        builder(tuple(input_shape), n_classes, **params)
        return True
    except Exception:  # the user's code: any failure means "not at this size"
        return False
    finally:
        keras.backend.clear_session()


def smallest_input(builder, input_shape, n_classes, params) -> int | None:
    """The smallest square input size the builder accepts (same channels), or None."""
    channels = input_shape[-1]
    low = max(input_shape[:2])  # fails
    high = low * 2
    while not _builds(builder, (high, high, channels), n_classes, params):
        low, high = high, high * 2
        if high > MAX_PROBE_SIZE:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        if _builds(builder, (middle, middle, channels), n_classes, params):
            high = middle
        else:
            low = middle
    return high


def attack_problems(name: str, entry: dict) -> list[str]:
    from advfit.attacks.plugin import check_signature
    from advfit.runtime.plugins import PluginError, load_callable

    key = f"attacks.{name}.function"
    try:
        check_signature(load_callable(entry["function"], key), entry.get("params") or {}, key)
    except PluginError as error:
        return [str(error)]
    return []


if __name__ == "__main__":
    print(json.dumps(check(json.loads(sys.stdin.read()))))
