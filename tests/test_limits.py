"""Counts past their caps, runs past their cost budget, YAML alias bombs and epoch lists
across regimes: each refused (or accepted) by the config check, before any job."""

from __future__ import annotations

import copy
import time

import pytest
import yaml

from conftest import ROOT, run_snakemake

from advfit.config import ConfigError, check_schema, read_yaml, validate_config
from advfit.data.datasets import dataset_info
from advfit.limits import cost_parts, passes_per_point


def _refused(config, *fragments):
    with pytest.raises(ConfigError) as caught:
        validate_config(config)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    return str(caught.value)


def test_a_billion_epochs_is_refused_naming_the_key_and_the_cap(default_config):
    default_config["regimes"]["normal"]["epochs"] = 1_000_000_000
    _refused(default_config, "config key 'regimes.normal.epochs': 1000000000 is above "
                             "limits.max_epochs (10000)")


def test_adversarial_training_iterations_are_capped(default_config):
    default_config["regimes"]["normal"]["adversarial_training"] = {
        "attack": "pgd", "eps": 0.1, "eps_iter": 0.01, "nb_iter": 1_000_000_000}
    _refused(default_config, "'regimes.normal.adversarial_training.nb_iter': 1000000000 is "
                             "above limits.max_iterations (100000)")


def test_attack_counts_and_plugin_parameters_are_capped(default_config):
    default_config["attacks"]["pgd"]["nb_iter"] = 200_000
    default_config["attacks"]["hsj"] = {"method": "hopskipjump", "max_eval": 10**9}
    message = _refused(default_config)
    assert "'attacks.pgd.nb_iter': 200000 is above limits.max_iterations" in message
    assert "'attacks.hsj.max_eval': 1000000000 is above limits.max_queries" in message


def test_caps_are_configurable(default_config):
    default_config["regimes"]["normal"]["epochs"] = 30
    default_config["limits"] = {"max_epochs": 25}
    _refused(default_config, "'regimes.normal.epochs': 30 is above limits.max_epochs (25)")
    default_config["limits"] = {"max_epochs": 30}
    assert validate_config(default_config)["limits"]["max_epochs"] == 30


def test_the_cost_estimate_adds_up_the_run(default_config):
    config = validate_config(default_config)
    info = dataset_info(config["dataset"])
    parts = {p.what.split(" (")[0]: p.passes for p in cost_parts(config, info)}
    # 3 splits x 20 epochs x (training images + test images), by hand
    assert parts["training, regime normal"] == 3 * 20 * (info.n_train + info.n_test)
    # pgd: 20 iterations on 200 points, 3 splits x 2 regimes
    assert parts["crafting, attack pgd"] == 3 * 2 * 200 * 20
    assert parts["crafting, attack fgsm"] == 3 * 2 * 200
    # white-box: epochs 5, 10, 15, 20 + M + E = 20 // 5 + 2 snapshots, 100 points, pgd's 20
    assert parts["white-box view, attack pgd, regime normal"] == 3 * 6 * 100 * 20
    assert passes_per_point({"binary_search_steps": 10, "max_iter": 10, "eps": 0.3}) == 100


def test_adversarial_training_multiplies_the_training_cost(default_config):
    default_config["regimes"]["normal"]["adversarial_training"] = {
        "attack": "pgd", "eps": 0.1, "eps_iter": 0.01, "nb_iter": 50_000}
    default_config["regimes"]["normal"]["epochs"] = 2000
    message = _refused(default_config, "config key 'regimes.normal': the run's cost estimate is",
                       "training, regime normal (3 splits x 2000 epochs x ")
    assert "x (1 + 1 x 50000 PGD steps))" in message


def test_a_run_over_its_budget_is_refused_naming_the_largest_part(default_config):
    default_config["attacks"]["pgd"]["nb_iter"] = 50_000  # under its cap, but costly
    default_config["limits"] = {"max_image_passes": 1e8}
    _refused(default_config, "config key 'snapshot_attacks.n_points': the run's cost estimate is",
             "above limits.max_image_passes (1e+08)", "largest parts: white-box view, attack pgd,")
    del default_config["snapshot_attacks"]
    default_config["limits"] = {"max_image_passes": 5e7}
    _refused(default_config, "config key 'attacks.pgd': the run's cost estimate is 9.",
             "largest parts: crafting, attack pgd (attacks.pgd): 6e+07")


def _bomb(levels=9, width=10) -> str:
    """The issue's alias bomb: width aliases per level, levels deep, under model.params."""
    lines = ["    a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]"
              for i in range(1, levels + 1)]
    text = (ROOT / "config.yaml").read_text().replace(
        "model:\n  name: lenet5", "model:\n  name: lenet5\n  params:\n" + "\n".join(lines), 1)
    assert "a9" in text or levels < 9
    return text


def test_a_yaml_alias_bomb_is_refused_at_once_naming_file_and_key(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"config file {path}: config key 'model.params.a9': "
                                          r"the config expands to 1.2\de\+10 values"):
        read_yaml(path)
    assert time.monotonic() - started < 2


def test_a_config_that_contains_itself_is_refused(default_config):
    loop = []
    loop.append(loop)
    default_config["model"]["params"] = {"p": loop}
    with pytest.raises(ConfigError, match="'model.params.p': the config refers to itself"):
        check_schema(default_config)


def test_ordinary_aliases_are_fine(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text(_bomb(levels=2))  # 100 values
    assert len(read_yaml(path)["model"]["params"]["a2"]) == 10


def test_a_listed_epoch_applies_to_the_regimes_that_have_it(default_config):
    # normal has 20 epochs, overfit 25: 22 is overfit's only, 30 nobody's.
    default_config["snapshot_attacks"]["snapshots"] = [22]
    assert validate_config(copy.deepcopy(default_config))["snapshot_attacks"]["snapshots"] == [22]
    default_config["snapshot_attacks"]["snapshots"] = [22, 30]
    _refused(default_config, "'snapshot_attacks.snapshots': epochs [30] are past the last epoch "
                             "of every regime (the longest, overfit, has 25)")


@pytest.mark.e2e
def test_the_issues_escapes_are_refused_before_any_job(tmp_path):
    default = yaml.safe_load((ROOT / "config.yaml").read_text())
    epochs = copy.deepcopy(default)
    epochs["regimes"]["normal"]["epochs"] = 1_000_000_000
    training = copy.deepcopy(default)
    training["regimes"]["normal"]["adversarial_training"] = {
        "attack": "pgd", "eps": 0.1, "eps_iter": 0.01, "nb_iter": 1_000_000_000}
    cases = {"epochs": (yaml.safe_dump(epochs), "'regimes.normal.epochs'"),
             "training": (yaml.safe_dump(training),
                          "'regimes.normal.adversarial_training.nb_iter'"),
             "bomb": (_bomb(), "'model.params.a9'")}
    for name, (text, key) in cases.items():
        workdir = tmp_path / name
        workdir.mkdir()
        (workdir / "config.yaml").write_text(text)
        started = time.monotonic()
        done = run_snakemake(workdir, "--dry-run", timeout=120)
        output = done.stdout + done.stderr
        assert done.returncode != 0 and key in output, (name, output[-2000:])
        assert "Job stats" not in output, name
        assert not (workdir / "results").exists(), name
        assert time.monotonic() - started < 60, name


@pytest.mark.e2e
def test_an_epoch_of_one_regime_only_is_attacked_in_that_regime(tmp_path):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["snapshot_attacks"]["snapshots"] = [22]
    done = run_snakemake(tmp_path, "--dry-run", config=config, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "attack_snapshots" in done.stdout


def test_the_config_checker_names_what_snakemakes_own_parser_cannot(tmp_path):
    """Snakemake parses a --configfile before advfit runs, and says only "not valid JSON or
    YAML" or "keys at top level"; `python -m advfit.config` names file and line."""
    import subprocess
    import sys

    broken, empty, good = tmp_path / "broken.yaml", tmp_path / "empty.yaml", tmp_path / "ok.yaml"
    broken.write_text("seed: 0\nattacks:\n  fgsm: {eps: 0.1\n")
    empty.write_text("")
    good.write_text((ROOT / "config.yaml").read_text())
    done = subprocess.run([sys.executable, "-m", "advfit.config", str(broken), str(empty),
                           str(good)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"config file {broken}, line 4, column 1: not valid YAML" in done.stderr
    assert f"config file {empty} is empty" in done.stderr
    assert done.stdout.strip() == f"{good}: ok"
