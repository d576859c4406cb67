"""Plugin attacks that hang, misbehave or write where they should not (issue 25).

Real plugin files in tmp_path, a real Keras model, real signals, a real warm
interpreter and real ``snakemake`` runs for the config check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from advfit.runtime.plugins import CallLimit, PluginTimeout, source_path

from conftest import ROOT, run_snakemake

STUCK = '''
import time

import numpy as np


def loop(model, x, y, *, seed):
    while True:
        pass


def sleep(model, x, y, *, seed):
    time.sleep(10_000)


def swallow(model, x, y, *, seed):
    """Catches the interrupt and returns: still a timeout."""
    try:
        time.sleep(10_000)
    except BaseException:
        return x


def deaf(model, x, y, *, seed):
    """Catches every interrupt and goes on: only the hard exit ends it."""
    while True:
        try:
            time.sleep(10_000)
        except BaseException:
            pass


def fine(model, x, y, *, seed):
    return np.clip(x + 0.01, 0, 1).astype(np.float32)
'''


def _spec(folder: Path, function: str, timeout_s: float):
    from advfit.attacks import AttackSpec

    (folder / "stuck.py").write_text(STUCK)
    entry = {"method": "plugin", "function": f"{folder}/stuck.py:{function}"}
    return AttackSpec.from_config("stuck", entry, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def tiny():
    """A seeded logits model on 8x8x1 images, and four images with labels."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    rng = np.random.default_rng(0)
    return model, rng.uniform(size=(4, 8, 8, 1)).astype(np.float32), np.arange(4)


# --- 1. the time limit of one plugin call ---------------------------------------------

@pytest.mark.parametrize("function", ["loop", "sleep", "swallow"])
def test_a_stuck_plugin_call_is_stopped_naming_the_attack_and_the_limit(tmp_path, tiny,
                                                                       function):
    from advfit.attacks import craft

    model, x, y = tiny
    start = time.perf_counter()
    with pytest.raises(PluginTimeout) as error:
        craft(_spec(tmp_path, function, 0.5), model, x, y, seed=0)
    assert time.perf_counter() - start < 5
    assert str(error.value).startswith(f"config key 'attacks.stuck.function': {tmp_path}/"
                                       f"stuck.py:{function} did not return within 0.5 s "
                                       f"(config key 'limits.plugin_timeout_s')")
    # The process goes on: no alarm left to kill it (SIGALRM's default), the next call works.
    time.sleep(0.7)
    out = craft(_spec(tmp_path, "fine", 0.5), model, x, y, seed=0)
    assert out.shape == x.shape


def test_a_call_within_its_limit_leaves_no_alarm_behind(tmp_path, tiny):
    import signal

    from advfit.attacks import craft

    model, x, y = tiny
    before = signal.getsignal(signal.SIGALRM)
    craft(_spec(tmp_path, "fine", 0.3), model, x, y, seed=0)
    assert signal.getsignal(signal.SIGALRM) is before
    time.sleep(0.6)  # a stray alarm would kill this process (SIGALRM's default action)


def test_each_crafting_job_passes_the_limit_from_its_rule():
    """Every script that builds an AttackSpec gives it the rule's limit, and every rule
    running such a script has the limit among its params."""
    scripts = [p for p in (ROOT / "workflow/scripts").glob("*.py")
               if "AttackSpec.from_config(" in p.read_text()]
    assert len(scripts) >= 5  # the four crafting jobs and compute_robustness_curves
    for script in scripts:
        assert "timeout_s=snakemake.params.plugin_timeout.seconds" in script.read_text(), script
    rules = "".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    for script in scripts:
        block = rules[:rules.index(f'"../scripts/{script.name}"')]
        block = block[block.rindex("\nrule "):]
        assert 'plugin_timeout=CallLimit(config["limits"]["plugin_timeout_s"])' in block, script


def test_the_limit_is_not_a_rerun_trigger():
    """Snakemake records params of built-in types only (and reruns when they change):
    the limit changes no result, so its wrapper must stay unrecorded."""
    from snakemake.persistence import UNREPRESENTABLE, PersistenceBase

    serialize = PersistenceBase._serialize_param_builtin
    assert serialize(None, CallLimit(21600)) is UNREPRESENTABLE
    assert serialize(None, 21600) is not UNREPRESENTABLE


WARM_JOB = """
import sys
import numpy as np
import keras
from advfit.attacks import AttackSpec, craft
from advfit.runtime import plugins

plugins.HARD_EXIT_GRACE_S = 1.0
keras.utils.set_random_seed(0)
inputs = keras.Input(shape=(8, 8, 1))
model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
spec = AttackSpec.from_config("stuck", {"method": "plugin", "function": sys.argv[1]},
                              timeout_s=1.0)
print("server", __import__("os").getppid(), flush=True)  # the warm interpreter
craft(spec, model, x, np.arange(4), seed=0)
"""


@pytest.fixture()
def warm_folder(tmp_path):
    from advfit.jobs import warm

    yield tmp_path
    warm.stop_servers(str(tmp_path))


def test_in_a_warm_interpreter_a_stuck_plugin_fails_its_job_and_the_server_serves_on(
        warm_folder):
    from advfit.jobs import warm

    (warm_folder / "stuck.py").write_text(STUCK)
    script = warm_folder / "job.py"
    script.write_text("from advfit.jobs.warm import handoff\nhandoff()\n" + WARM_JOB)
    env = {k: v for k, v in os.environ.items() if k not in ("ADVFIT_WARM", "SLURM_JOB_ID")}
    env.update(ADVFIT_WARM_IDLE="60", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")

    def job(function):
        return subprocess.run([sys.executable, str(script), f"stuck.py:{function}"],
                              cwd=warm_folder, env=env, capture_output=True, text=True,
                              timeout=300)

    # Stuck in time.sleep: interrupted, the job fails with the message.
    soft = job("sleep")
    assert soft.returncode == 1, soft.stderr[-3000:]
    assert ("PluginTimeout: config key 'attacks.stuck.function': stuck.py:sleep did not "
            "return within 1 s (config key 'limits.plugin_timeout_s')") in soft.stderr
    # Deaf to the interrupt: the message is logged, then the child is ended.
    hard = job("deaf")
    assert hard.returncode != 0
    assert ("config key 'attacks.stuck.function': stuck.py:deaf did not return within 1 s "
            "(config key 'limits.plugin_timeout_s')") in hard.stderr
    assert "ending the process" in hard.stderr
    # The warm interpreters that ran them live on, and take the next job.
    for done in (soft, hard):
        server = int(done.stdout.split()[1])
        assert Path(f"/proc/{server}/stat").read_text().split(") ")[1][0] in "SR"
    fine = job("fine")
    assert fine.returncode == 0, fine.stderr[-3000:]
    logs = "".join(p.read_text() for p in (warm_folder / warm.STATE_DIR).glob("*.log"))
    assert logs.count(" job job.py in child") == 3


# --- 2. what the config check runs, and where --------------------------------------------

def test_finding_a_module_plugin_runs_none_of_its_packages_code(tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    marker = tmp_path / "ran.txt"
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (package / "attack.py").write_text("def attack(model, x, y, *, seed):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert source_path("mypkg.attack:attack", "k") == package / "attack.py"
    assert not marker.exists()
    assert "mypkg" not in sys.modules


def test_outside_snakemakes_command_line_the_check_runs():
    from advfit.plugin_check import runs_no_job, snakemake_cli_args

    assert snakemake_cli_args() is None and runs_no_job() is False


MARKING = '''
import os
from pathlib import Path

# Import-time code: where does it run, and where do its relative writes go?
with open(os.environ["ADVFIT_TEST_MARKER"], "a") as handle:
    handle.write(os.getcwd() + "\\n")
Path("stray.txt").write_text("written at import")


def attack(model, x, y, *, seed):
    Path("stray_call.txt").write_text("written by the call")
    return x
'''

DRY_CONFIG = {
    "seed": 3,
    "dataset": {"name": "digits"},
    "model": {"name": "lenet5"},
    "splits": {"method": "kfold", "n_splits": 2},
    "regimes": {"overfit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 64,
                            "epochs": 2}},
    "best_snapshot": {"metric": "val_accuracy"},
    "attack_subset_size": 40,
}


@pytest.mark.e2e
def test_plugins_are_imported_on_a_dry_run_in_a_scratch_directory_never_on_unlock(
        tmp_path, monkeypatch):
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "marking.py").write_text(MARKING)
    marker = tmp_path / "imports.txt"
    monkeypatch.setenv("ADVFIT_TEST_MARKER", str(marker))
    config = {**DRY_CONFIG, "attacks": {"mine": {"method": "plugin",
                                                 "function": "marking.py:attack"}}}
    for command in (["--unlock"], ["--list-rules"]):
        done = run_snakemake(workdir, *command, config=config)
        assert done.returncode == 0, done.stderr[-3000:]
        assert not marker.exists(), command  # not imported
    done = run_snakemake(workdir, "-n", config=config)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Job stats" in done.stdout
    scratch = Path(marker.read_text().strip())  # imported once, in the check's child
    assert scratch != workdir and scratch.name.startswith("advfit-plugin-check-")
    assert not scratch.exists()  # gone, with what the plugin wrote there
    assert sorted(p.name for p in workdir.iterdir()) == [".snakemake", "config.yaml",
                                                         "marking.py"]


BROKEN = '''
import time

import numpy as np


def nan(model, x, y, *, seed):
    return np.full_like(x, np.nan)


def bright(model, x, y, *, seed):
    return x + 0.5


def uint8(model, x, y, *, seed):
    return (x * 255).astype(np.uint8)


def flat(model, x, y, *, seed):
    return x.reshape(len(x), -1)


def asleep(model, x, y, *, seed):
    time.sleep(10_000)
'''

DRY = r" \(the config check's dry call: 4 random images 8x8x1 in \[0, 1\], an untrained lenet5\)"


@pytest.mark.e2e
def test_a_dry_call_refuses_broken_output_and_a_stuck_plugin_before_any_job(tmp_path):
    import re

    (tmp_path / "broken.py").write_text(BROKEN)
    attacks = {name: {"method": "plugin", "function": f"broken.py:{name}"}
               for name in ("nan", "bright", "uint8", "flat", "asleep")}
    config = {**DRY_CONFIG, "attacks": attacks, "limits": {"plugin_timeout_s": 2}}
    done = run_snakemake(tmp_path, "-n", config=config)
    output = done.stdout + done.stderr  # Snakemake 9 logs the error to stdout
    assert done.returncode != 0
    assert "Job stats" not in output
    for message in [
        "'attacks.nan.function': broken.py:nan: returned non-finite values",
        r"'attacks.bright.function': broken.py:bright: returned values outside \[0.0, 1.0\]",
        "'attacks.uint8.function': broken.py:uint8: returned dtype uint8, expected floating",
        r"'attacks.flat.function': broken.py:flat: returned shape \(4, 64\), expected "
        r"\(4, 8, 8, 1\)",
        r"'attacks.asleep.function': broken.py:asleep did not return within 2 s \(config key "
        r"'limits.plugin_timeout_s'\); if it is slow rather than stuck, raise that limit",
    ]:
        assert re.search("config key " + message + ".*" + DRY, output), message
    assert {p.name for p in tmp_path.iterdir()} <= {".snakemake", "broken.py", "config.yaml"}


# --- 3. the dry call, directly ----------------------------------------------------------

RAISING = '''
def boom(model, x, y, *, seed):
    model.get_layer("conv1")  # lenet5 has it, a stand-in has not
    raise ValueError("no luck")


def nan(model, x, y, *, seed):
    return x * float("nan")
'''


def _check(folder: Path, model: str, function: str, timeout_s: float = 600,
           code: str = RAISING):
    """The config check's child, called directly: one plugin attack ``function``."""
    from advfit.plugin_check import check

    (folder / "plugin.py").write_text(code)
    request = {"model": None, "input_shape": [8, 8, 1], "n_classes": 10, "dry_model": model,
               "workdir": str(folder), "timeout_s": timeout_s, "timeout_capped": False,
               "attacks": {"mine": {"method": "plugin", "function": f"plugin.py:{function}"}}}
    return check(request)


def test_a_plugin_that_raises_on_the_configured_model_is_refused(tmp_path):
    problems = _check(tmp_path, "lenet5", "boom")
    assert problems == ["config key 'attacks.mine.function': plugin.py:boom raised "
                        "ValueError: no luck (the config check's dry call: 4 random images "
                        "8x8x1 in [0, 1], an untrained lenet5)"]


def test_a_costly_model_gets_a_stand_in_whose_failures_are_not_held_against_the_plugin(
        tmp_path):
    assert _check(tmp_path, "inception_v3", "boom") == []  # no conv1 there: not its fault
    problems = _check(tmp_path, "inception_v3", "nan")
    assert problems == ["config key 'attacks.mine.function': plugin.py:nan: returned "
                        "non-finite values (the config check's dry call: 4 random images "
                        "8x8x1 in [0, 1], a stand-in linear model)"]


def test_a_plugin_whose_import_hangs_is_refused_naming_the_limit(tmp_path):
    start = time.perf_counter()
    problems = _check(tmp_path, "lenet5", "attack", timeout_s=0.5,
                      code="while True:\n    pass\n")
    assert time.perf_counter() - start < 10
    assert problems == ["config key 'attacks.mine.function': plugin.py:attack did not finish "
                        "importing within 0.5 s (config key 'limits.plugin_timeout_s'); if it "
                        "is slow rather than stuck, raise that limit"]
