"""Checks of the config's custom model and plugin attacks, before any job runs.

The cheap part (references well formed, files there) runs in the scheduler
and runs none of your code; the rest imports it and needs TensorFlow (~5 s to
import), so it runs once in a child process, on the CPU, in a scratch
working directory (what your code writes relative to it is thrown away),
only when the config has a custom model or a plugin attack: the scheduler
never imports TensorFlow nor your code, nor takes a GPU, and the default run
pays nothing. The child builds the model, imports each plugin attack and
calls it once on a few random images (a *dry call*, time-limited), with the
jobs' output checks. A Snakemake command that runs no job (``--unlock``,
``--list-rules``, ``--cleanup-metadata``, ...) skips the child: it imports
nothing of yours.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from advfit.runtime.plugins import HARD_EXIT_STATUS

MAX_PROBE_SIZE = 1024  # the largest square input tried when looking for the minimum
CHECK_TIMEOUT_S = 600  # the child, less its dry calls
DRY_CALL_MAX_S = 600  # a dry call's limit: limits.plugin_timeout_s, at most this
DRY_POINTS = 4
DRY_SEED = 0
# Registry models cheap enough to build for the dry call; others get a stand-in.
DRY_CALL_MODELS = ("lenet5",)

# Snakemake's actions that run no job (the branches of snakemake/cli.py's
# args_to_api before execute_workflow), by their argparse names.
NO_JOB_ACTIONS = (
    "lint", "list_target_rules", "list_rules", "print_compilation", "containerize",
    "generate_unit_tests", "dag", "rulegraph", "filegraph", "d3dag", "unlock",
    "cleanup_metadata", "conda_cleanup_envs", "conda_create_envs_only", "list_conda_envs",
    "cleanup_shadow", "container_cleanup_images", "list_changes", "list_input_changes",
    "list_params_changes", "list_untracked", "summary", "detailed_summary", "archive",
    "delete_all_output", "delete_temp_output", "touch", "deploy_sources",
)


def plugin_problems(config: dict, image_shape, n_classes: int) -> list[str]:
    """Every problem of the custom model and plugin attacks, each naming its config key."""
    from advfit.attacks.spec import PLUGIN
    from advfit.models.architectures import BUILDER_KEY, CUSTOM
    from advfit.runtime.plugins import PluginError, source_path

    limit = float(config["limits"]["plugin_timeout_s"])
    dry_timeout = min(limit, DRY_CALL_MAX_S)
    # Relative references resolve against this directory, not the child's scratch one.
    request = {"model": None, "attacks": {}, "input_shape": list(image_shape),
               "n_classes": int(n_classes), "dry_model": config["model"]["name"],
               "workdir": str(Path.cwd().resolve()), "timeout_s": dry_timeout,
               "timeout_capped": limit > DRY_CALL_MAX_S}
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
    # Commands that run no job import nothing (the file checks above run none of your code).
    if (request["model"] or request["attacks"]) and not runs_no_job():
        # an import and a dry call per attack, each bounded
        problems += _run_child(request, CHECK_TIMEOUT_S + 2 * dry_timeout * len(
            request["attacks"]))
    return problems


def runs_no_job() -> bool:
    """True when this Snakemake process will run no job of this workflow: an action
    such as ``--unlock``, or a job's own process (``--mode subprocess|remote``: the
    main process checked). Then nothing of the user's is imported.

    Snakemake 9 parses the Snakefile before it picks the action (snakemake/api.py:
    ``DAGApi.__post_init__`` includes it; ``dag_api.unlock()`` comes after) and
    gives the workflow no public flag for it, so this reads the command line as
    Snakemake's CLI parsed it (profiles included): the ``args`` of ``args_to_api``
    up the call stack. Run from Snakemake's Python API there is none: the check runs.
    """
    args = snakemake_cli_args()
    if args is None:
        return False
    if any(getattr(args, name, None) not in (None, False) for name in NO_JOB_ACTIONS):
        return True
    if getattr(args, "reporter", None) and not getattr(args, "report_after_run", False):
        return True  # --report without --report-after-run: a report of existing results
    return getattr(getattr(args, "mode", None), "name", "DEFAULT") != "DEFAULT"


def snakemake_cli_args() -> argparse.Namespace | None:
    """The arguments Snakemake's command line parsed, when it is parsing this workflow."""
    cli = os.path.join("snakemake", "cli.py")
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "args_to_api" and code.co_filename.endswith(cli):
            args = frame.f_locals.get("args")
            return args if isinstance(args, argparse.Namespace) else None
        frame = frame.f_back
    return None


def _run_child(request: dict, timeout_s: float) -> list[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if env.get("PYTHONPATH"):  # its relative entries mean the workflow's directory
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry) if entry else entry
                                            for entry in env["PYTHONPATH"].split(os.pathsep))
    # A fresh working directory: relative writes of your code land there, and go.
    with tempfile.TemporaryDirectory(prefix="advfit-plugin-check-",
                                     ignore_cleanup_errors=True) as scratch:
        try:
            done = subprocess.run([sys.executable, "-m", "advfit.plugin_check"],
                                  input=json.dumps(request), capture_output=True, text=True,
                                  env=env, cwd=scratch, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return [f"checking the custom model and plugin attacks did not finish within "
                    f"{timeout_s:g} s (importing and building them, a dry call of each attack)"]
    lines = done.stdout.strip().splitlines()
    if done.returncode == HARD_EXIT_STATUS:  # a plugin deaf to its time limit: its message
        return done.stderr.strip().splitlines()[-1:]
    if done.returncode != 0 or not lines:
        return [f"checking the custom model and plugin attacks failed: {done.stderr[-2000:]}"]
    return json.loads(lines[-1])


def check(request: dict) -> list[str]:
    """The child's work: every problem of the custom model and the plugin attacks."""
    from advfit.runtime.plugins import relative_to

    problems, model = [], None
    input_shape, n_classes = tuple(request["input_shape"]), request["n_classes"]
    with relative_to(request["workdir"]):
        if request["model"]:
            problems, model = custom_model(request["model"], input_shape, n_classes)
        if request["attacks"]:
            dry = DryCall(request, model)
            for name, entry in request["attacks"].items():
                problems += attack_problems(name, entry, dry)
    return problems


def model_problems(spec: dict, input_shape: tuple, n_classes: int) -> list[str]:
    return custom_model(spec, input_shape, n_classes)[0]


def custom_model(spec: dict, input_shape: tuple, n_classes: int) -> tuple[list[str], object]:
    """The problems of the custom model, and the model when it has none."""
    import numpy as np

    from advfit.models.architectures import BUILDER_KEY, build_custom
    from advfit.runtime.plugins import PluginError, load_callable

    try:
        builder = load_callable(spec["builder"], BUILDER_KEY)
    except PluginError as error:
        return [str(error)], None
    params = spec.get("params") or {}
    try:
        _seed()
        model = build_custom(spec, input_shape, n_classes)
    except PluginError as error:
        if _builds(builder, input_shape, n_classes, params):
            return [str(error)], None  # not a matter of size
        minimum = smallest_input(builder, input_shape, n_classes, params)
        if minimum is None:
            return [str(error)], None
        return [f"config key '{BUILDER_KEY}': {spec['builder']} needs inputs of at least "
                f"{minimum}x{minimum} pixels, the data has {input_shape[0]}x{input_shape[1]}; "
                f"upsample inside the model (as lenet5 does) or use larger images"], None
    x = np.random.default_rng(0).uniform(size=(4, *input_shape)).astype(np.float32)
    out = np.asarray(model(x, training=False))
    if np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        return [f"config key '{BUILDER_KEY}': {spec['builder']} outputs probabilities (rows "
                f"sum to 1); return logits instead: the training loss and every attack expect "
                f"logits"], None
    return [], model


def _seed() -> None:
    import keras

    keras.utils.set_random_seed(DRY_SEED)


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


class DryCall:
    """What every plugin attack is tried on: a seeded model and a few seeded images.

    The model is the configured one when it is cheap to build (lenet5, or the
    custom model the check built anyway); else a stand-in with the data's
    image shape and class count (one dense layer of logits).
    """

    def __init__(self, request: dict, custom=None):
        import numpy as np

        from advfit.models.architectures import build_model

        self.input_shape = tuple(request["input_shape"])
        self.n_classes = int(request["n_classes"])
        self.timeout_s = float(request["timeout_s"])
        self.capped = bool(request.get("timeout_capped"))
        name = request["dry_model"]
        _seed()
        if custom is not None or name in DRY_CALL_MODELS:
            self.model = (custom if custom is not None
                          else build_model(name, self.input_shape, self.n_classes))
            self.stand_in = False
        else:
            self.model, self.stand_in = self._stand_in(), True
        rng = np.random.default_rng(DRY_SEED)
        self.x = rng.uniform(size=(DRY_POINTS, *self.input_shape)).astype(np.float32)
        self.y = rng.integers(0, self.n_classes, size=DRY_POINTS)
        model = "a stand-in linear model" if self.stand_in else f"an untrained {name}"
        self.note = (f"(the config check's dry call: {DRY_POINTS} random images "
                     f"{'x'.join(map(str, self.input_shape))} in [0, 1], {model})")

    def _stand_in(self):
        import keras
        from keras import layers

        inputs = keras.Input(shape=self.input_shape)
        outputs = layers.Dense(self.n_classes)(layers.Flatten()(inputs))
        return keras.Model(inputs, outputs, name="dry_call_stand_in")


def attack_problems(name: str, entry: dict, dry: DryCall | None = None) -> list[str]:
    """Import the plugin (time-limited), check its signature, then the dry call."""
    from advfit.attacks.guards import BadOutput
    from advfit.attacks.plugin import check_signature, run_plugin
    from advfit.runtime.plugins import (PluginError, PluginTimeout, load_callable, time_limit,
                                        timeout_message)

    key, ref = f"attacks.{name}.function", entry["function"]
    params = entry.get("params") or {}
    limit = dry.timeout_s if dry else DRY_CALL_MAX_S
    try:
        with time_limit(limit, timeout_message(key, ref, limit, "did not finish importing")):
            function = load_callable(ref, key)
        check_signature(function, params, key)
    except (PluginError, PluginTimeout) as error:
        return [str(error)]
    if dry is None:
        return []
    try:
        run_plugin(ref, params, dry.model, dry.x, dry.y, seed=DRY_SEED, key=key,
                   timeout_s=dry.timeout_s)
    except BadOutput as error:
        return [f"{error} {dry.note}"]
    except PluginTimeout as error:
        capped = (f"; the dry call stops at {DRY_CALL_MAX_S} s whatever the limit: make it "
                  f"return sooner on {DRY_POINTS} images") if dry.capped else ""
        return [f"{error} {dry.note}{capped}"]
    except Exception as error:  # the user's code: any failure, named
        if dry.stand_in:
            return []  # it may need the real model's layers: the jobs will tell
        return [f"config key '{key}': {ref} raised {type(error).__name__}: {error} {dry.note}"]
    return []


if __name__ == "__main__":
    print(json.dumps(check(json.loads(sys.stdin.read()))), flush=True)
    # Now: a thread a plugin left running must not hold the child (nor TensorFlow's teardown).
    os._exit(0)
