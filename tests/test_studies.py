"""Many studies in one run (the `studies` list), and advfit as a module of a host
workflow: the entries are checked before any job, each study runs as the workflow
again under results/studies/<study>/, the tables are stacked with a `study`
column, and a host Snakefile that includes advfit by `module` runs it under its
own prefix."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from advfit.config import ConfigError
from advfit.runtime.io import read_table
from advfit.studies import combine_tables, study_configs, study_tables

from conftest import ROOT, run_snakemake, run_workflow_once

# the catalog's .test/ configs: two tiny studies on the same data, the second with a
# second attack and a higher learning rate; TINY is the single-study one
TWO = yaml.safe_load((ROOT / ".test/config_studies/config.yaml").read_text())
TINY = yaml.safe_load((ROOT / ".test/config/config.yaml").read_text())


def test_the_test_configs_are_one_study_and_two_of_it():
    assert {k: v for k, v in TWO.items() if k != "studies"} == TINY
    assert [study["name"] for study in TWO["studies"]] == ["base", "fast"]


# ------------------------------------------------------------------ the entries

def test_each_study_replaces_the_keys_it_sets_whole():
    studies = study_configs(TWO)
    assert list(studies) == ["base", "fast"]
    assert studies["base"] == {**TINY, "study": "base"}
    fast = studies["fast"]
    assert fast["study"] == "fast" and "studies" not in fast
    assert list(fast["attacks"]) == ["fgsm", "bim"]
    assert fast["regimes"]["overfit"]["learning_rate"] == 0.03
    assert fast["dataset"] == TINY["dataset"] and fast["seed"] == 3
    fast["model"]["name"] = "changed"  # each study its own copy
    assert TWO["model"]["name"] == "lenet5" and studies["base"]["model"]["name"] == "lenet5"


@pytest.mark.parametrize("studies, message", [
    ([{"name": "a"}, {"name": "a"}], r"'studies\[1\].name': study 'a' is given twice"),
    ([{"name": "a", "modle": {}}], r"'studies.a.modle': unknown key"),
    ([{"name": "a", "study": "b"}], r"'studies.a.study': unknown key"),
    ([{"name": "A b"}], r"'studies\[0\].name': 'A b' must match"),
    ([{"dataset": {"name": "digits"}}], r"'studies\[0\].name': None must match"),
    ([], r"'studies': must be a non-empty list"),
    (["a"], r"'studies\[0\]': 'a' is not a mapping"),
])
def test_bad_entries_are_refused_naming_the_key(studies, message):
    with pytest.raises(ConfigError, match=message):
        study_configs({**TINY, "studies": studies})


def test_combined_tables_put_the_study_first_and_keep_every_column():
    a = pd.DataFrame({"regime": ["x"], "accuracy": [0.5]})
    b = pd.DataFrame({"regime": ["y", "y"], "accuracy": [0.25, 1.0], "extra": [1, 2]})
    out = combine_tables({"one": a, "two": b})
    assert list(out.columns) == ["study", "regime", "accuracy", "extra"]
    assert out.study.tolist() == ["one", "two", "two"]
    assert out.accuracy.tolist() == [0.5, 0.25, 1.0] and out.extra.isna().tolist()[0]
    assert study_tables(["results/studies/one/tables/a.csv", "results/studies/two/tables/b.csv",
                         "results/studies/one/figures/c.png"], "one") == ["a"]


def test_a_bad_study_is_refused_before_any_job_naming_it(tmp_path):
    bad = copy.deepcopy(TWO)
    bad["studies"][1]["attacks"] = {"fgsm": {"eps": -1}}
    done = run_snakemake(tmp_path, "--dry-run", config=bad)
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert re.search(r"study 'fast': invalid configuration:\s+config key 'attacks.fgsm.eps'",
                     said), said[-3000:]
    done = run_snakemake(tmp_path, "--dry-run", config={**TINY, "studies": [{"name": "a"},
                                                                            {"name": "a"}]})
    assert done.returncode != 0 and "study 'a' is given twice" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------ a two-study run

@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    return run_workflow_once(tmp_path_factory, "studies", TWO)


@pytest.mark.e2e
def test_two_studies_run_into_their_own_folders_and_stack_their_tables(two_studies):
    for study in ("base", "fast"):
        own = read_table(two_studies / f"results/studies/{study}/tables/accuracy.csv")
        assert set(own.split) == {0, 1} and "study" not in own.columns
        assert (two_studies / f"results/studies/{study}/digits/lenet5/overfit/split1"
                "/snapshots/epoch_002.weights.h5").is_file()
    accuracy = read_table(two_studies / "results/tables/accuracy.csv")
    assert accuracy.columns[0] == "study"
    assert accuracy.groupby("study").size().to_dict() == {
        study: len(read_table(two_studies / f"results/studies/{study}/tables/accuracy.csv"))
        for study in ("base", "fast")}
    # the second attack only in the study that has it
    sets = read_table(two_studies / "results/tables/adversarial_sets.csv")
    assert set(sets[sets.study == "base"].attack) == {"fgsm"}
    assert set(sets[sets.study == "fast"].attack) == {"fgsm", "bim"}
    # the stacked rows are the studies' own, study column aside
    base = read_table(two_studies / "results/studies/base/tables/delta_accuracy.csv")
    deltas = read_table(two_studies / "results/tables/delta_accuracy.csv")
    pd.testing.assert_frame_equal(
        deltas[deltas.study == "base"].drop(columns="study").reset_index(drop=True), base,
        check_dtype=False)
    # the learning rate differs, so the two studies' models differ
    fast = read_table(two_studies / "results/studies/fast/tables/accuracy.csv")
    mine = read_table(two_studies / "results/studies/base/tables/accuracy.csv")
    assert not mine.accuracy.equals(fast.accuracy)
    for ext in ("png", "svg"):
        assert (two_studies / f"results/figures/study_comparison.{ext}").stat().st_size > 1000


@pytest.mark.e2e
def test_the_report_has_a_section_per_study(two_studies):
    done = run_snakemake(two_studies, "--report", "report.zip", config=TWO)
    assert done.returncode == 0, done.stderr[-3000:]
    import zipfile

    with zipfile.ZipFile(two_studies / "report.zip") as archive:
        names = archive.namelist()
        html = archive.read(next(n for n in names if n.endswith("report.html"))).decode()
    assert sum(n.endswith("/study_comparison.png") for n in names) == 1
    assert sum(n.endswith("/accuracy_vs_epoch.png") for n in names) == 2  # one per study
    # the report's sections: one category per study, its subsections the usual ones
    categories = json.loads(re.search(r"var categories = (\{.*?\});", html).group(1))
    assert list(categories) == ["base", "fast", "Studies compared"]
    for study in ("base", "fast"):
        files = categories[study]["CNN experiment"]
        assert f"results/studies/{study}/figures/accuracy_vs_epoch.png" in files
        assert all(path.startswith(f"results/studies/{study}/") for path in files)


@pytest.mark.e2e
def test_a_finished_two_study_run_has_nothing_left_to_do(two_studies):
    done = run_snakemake(two_studies, "--dry-run", config=TWO)
    assert done.returncode == 0 and "Nothing to be done" in done.stdout + done.stderr


# ------------------------------------------------------------------ advfit as a module

HOST = """\
configfile: "host.yaml"


module advfit:
    snakefile:
        "{snakefile}"
    config:
        config["advfit"]
    prefix:
        "analysis/advfit"


use rule * from advfit as advfit_*


rule all:
    default_target: True
    input:
        rules.advfit_all.input,
        "analysis/summary.txt",


rule summarise:
    input:
        "analysis/advfit/results/tables/accuracy_summary.csv",
    output:
        "analysis/summary.txt",
    shell:
        "wc -l {{input}} > {{output}}"
"""


@pytest.mark.e2e
def test_a_host_workflow_runs_advfit_as_a_module_under_its_prefix(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "Snakefile").write_text(HOST.format(snakefile=ROOT / "Snakefile"))
    config = {**TINY, "splits": {"method": "kfold", "n_splits": 2, "use": [0]}}
    (host / "host.yaml").write_text(yaml.safe_dump({"advfit": config, "other": "host's own"}))
    done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=host,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]
    prefix = host / "analysis/advfit/results"
    accuracy = read_table(prefix / "tables/accuracy.csv")
    assert set(accuracy.split) == {0} and set(accuracy.attack) >= {"fgsm"}
    assert (prefix / "logs/digits/lenet5/overfit/split0/train_model.log").is_file()
    assert (host / "analysis/summary.txt").is_file()
    assert not (host / "results").exists()  # everything under the host's prefix


def test_the_workflow_pins_the_package_version_it_was_written_for():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    setup = (ROOT / "workflow/rules/setup.smk").read_text()
    assert f'ADVFIT_VERSION = "{version}"' in setup


def test_each_study_gets_the_slurm_profiles_gpu_requests(tmp_path):
    """profiles/slurm names rules (train_model: gpu 1); a study's rules are
    <study>_<rule> and must get the same requests and their own groups. The names
    are chosen to trip a match by prefix: `train` begins the rule name
    `train_model`, and the study `train_b` begins with `train_`."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    config = copy.deepcopy(TWO)
    config["studies"][0]["name"], config["studies"][1]["name"] = "train", "train_b"
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    profile["set-resources"]["train_b_train_model"] = {"runtime": 777}  # one study's own
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile/config.yaml").write_text(yaml.safe_dump(profile))
    done = run_snakemake(tmp_path, "--dry-run", "--profile", str(tmp_path / "profile"),
                         config=config)
    assert done.returncode == 0, done.stderr[-3000:]
    blocks = re.findall(r"^( *)rule (\w+):\n((?:\1    .*\n)*)", done.stdout, re.M)
    resources = {}
    for _, rule, body in blocks:
        resources.setdefault(rule, re.search(r"^ *resources: (.*)$", body, re.M).group(1))
    for study in ("train", "train_b"):
        for rule in ("train_model", "craft_adversarial_set", "evaluate_snapshots"):
            assert "gpu=1" in resources[f"{study}_{rule}"], (study, rule)
            assert "mem_mb=8000" in resources[f"{study}_{rule}"]
        # named for one study: its value wins, the rule's others stay
        runtime = "runtime=777" if study == "train_b" else "runtime=240"
        assert runtime in resources[f"{study}_train_model"]
        assert "gpu" not in resources[f"{study}_make_splits"]
        assert "mem_mb=8000" in resources[f"{study}_make_splits"]  # its own set-resources
    assert "gpu" not in resources["combine_study_tables"]
    # the profile's groups, per study: one group job per split x regime of each study
    groups = re.findall(r"Group job (\w+) ", done.stdout)
    assert sorted(set(groups)) == ["train_b_cnn_run", "train_cnn_run"]
    assert groups.count("train_cnn_run") == groups.count("train_b_cnn_run") == 2


def test_an_install_of_the_same_sources_is_accepted_and_other_sources_refused(tmp_path):
    """A host's `pip install <checkout>` puts a copy of src/advfit elsewhere: the
    workflow accepts it when its files are this checkout's, and refuses, naming
    both, when one differs."""
    import os
    import shutil

    site = tmp_path / "site"
    shutil.copytree(ROOT / "src/advfit", site / "advfit",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(site)}  # found before the editable install
    (tmp_path / "run").mkdir()
    (tmp_path / "run/config.yaml").write_text(yaml.safe_dump(TINY))

    def dry_run():
        return subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
             str(tmp_path / "run"), "--configfile", str(tmp_path / "run/config.yaml"),
             "--dry-run", "--quiet", "rules"],
            capture_output=True, text=True, timeout=300, env=env)

    done = dry_run()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(site / "advfit/studies.py", "a") as changed:
        changed.write("\n# edited\n")
    done = dry_run()
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"the advfit package of this checkout ({ROOT / 'src/advfit'})" in said, said[-3000:]
    assert f"found: {site / 'advfit'}, other sources" in said
