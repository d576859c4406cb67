"""Nothing wrong gets through: non-finite and out-of-domain numbers, config files
read strictly, and the invariant 'accuracy 0 at M' enforced, not assumed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from advfit.attacks import AttackSpec
from advfit.config import ConfigError, budget_problems, read_yaml, validate_config

from conftest import ROOT, run_snakemake


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


NAN, INF = float("nan"), float("inf")
# One key of each numeric class (rate, size, fraction, eps, step), NaN and +-inf.
NON_FINITE = [
    ("regimes.normal.learning_rate", INF),       # rate
    ("regimes.normal.learning_rate", NAN),
    ("regimes.normal.momentum", NAN),
    ("attack_subset_size", NAN),                 # size
    ("robustness_metrics.metrics.clever_u.radius", INF),
    ("regimes.overfit.label_noise", NAN),        # fraction
    ("splits.validation_fraction", NAN),
    ("attacks.fgsm.eps", NAN),                   # eps
    ("attacks.fgsm.eps", INF),
    ("attacks.pgd.eps", -INF),
    ("attacks.pgd.eps_iter", NAN),               # step
    ("robustness_metrics.metrics.empirical_robustness.eps_step", INF),
]


@pytest.mark.parametrize("key,value", NON_FINITE, ids=[f"{k}={v}" for k, v in NON_FINITE])
def test_non_finite_numbers_are_refused_naming_the_key(default_config, key, value):
    if key.startswith("robustness_metrics"):
        default_config["robustness_metrics"] = {"n_points": 10, "metrics": {
            "clever_u": {}, "empirical_robustness": {}}}
    _set(default_config, key, value)
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert f"'{key}'" in str(error.value)


def test_non_finite_problems_walk_lists_too(default_config):
    default_config["knn"]["attacks"] = ["fgsm", NAN]
    with pytest.raises(ConfigError, match=r"'knn\.attacks\.1': nan is not a finite number"):
        validate_config(default_config)


@pytest.mark.parametrize("norm,eps,ok", [
    ("inf", 1.0, True), ("inf", 1.0001, False), ("inf", 2, False),
    (2, 8.0, True), (2, 8.01, False),              # digits: 8x8x1, sqrt(64) = 8
])
def test_perturbation_budgets_are_bounded_by_the_data_range(norm, eps, ok):
    problems = budget_problems("attacks.a", {"eps": eps, "norm": norm}, (8, 8, 1))
    assert (problems == []) == ok, problems
    if not ok:
        assert "'attacks.a.eps'" in problems[0] and "[0, 1]" in problems[0]


def test_l2_budget_grows_with_the_image_size():
    cifar = (32, 32, 3)
    assert budget_problems("a", {"eps": 55.0, "norm": 2}, cifar) == []  # sqrt(3072) = 55.4
    assert budget_problems("a", {"eps": 56.0, "norm": 2}, cifar)
    assert budget_problems("m", {"radius": 5.0, "norm": 1}, (2, 2, 1))  # L1 limit 4


def test_steps_may_not_exceed_their_budget():
    problems = budget_problems("robustness_metrics.metrics.empirical_robustness",
                               {"eps": 0.1, "eps_step": 0.2}, (8, 8, 1))
    assert problems == ["config key 'robustness_metrics.metrics.empirical_robustness.eps_step': "
                        "0.2 is larger than eps (0.1)"]


def test_an_eps_of_2_on_images_in_0_1_is_refused(default_config):
    default_config["attacks"]["fgsm"]["eps"] = 2
    with pytest.raises(ConfigError, match=r"'attacks\.fgsm\.eps': 2 exceeds the largest L-inf"):
        validate_config(default_config)


def test_a_folder_without_the_dataset_files_is_refused_listing_them(default_config, tmp_path):
    default_config["dataset"] = {"name": "cifar10", "path": str(tmp_path)}
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    message = str(error.value)
    assert "'dataset.path'" in message and "data_batch_1" in message and "test_batch" in message


def test_a_missing_path_is_named(default_config, tmp_path):
    default_config["dataset"] = {"name": "mnist", "path": str(tmp_path / "nowhere")}
    with pytest.raises(ConfigError, match=r"'dataset\.path'.*nowhere does not exist"):
        validate_config(default_config)


def test_no_validation_set_needs_test_accuracy_selection(default_config):
    default_config["splits"] = {"method": "shuffle", "n_splits": 2, "validation_fraction": 0}
    with pytest.raises(ConfigError, match=r"'splits\.validation_fraction'.*test_accuracy"):
        validate_config(default_config)
    default_config["best_snapshot"]["metric"] = "test_accuracy"
    config = validate_config(default_config)
    assert config["knn"]["memorise"] == "train_and_validation"  # shuffle splits' default


def test_knn_defaults(default_config):
    config = validate_config(default_config)  # kfold
    assert config["knn"]["memorise"] == "train" and config["knn"]["vote_tie"] == "nearest"
    assert config["statistics"]["alternative"] == "two-sided"
    assert config["adversarial"]["min_margin"] == 0.0
    assert config["evaluation"]["nonzero_at_best"] == "error"


# --- config files read strictly -------------------------------------------------------------

def test_a_key_given_twice_is_refused_with_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("regimes:\n  normal:\n    learning_rate: 0.01\n    learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as error:
        read_yaml(path)
    assert str(error.value) == (f"config file {path}, line 4: key 'learning_rate' is given twice "
                                "in the same mapping (first on line 3); YAML would silently keep "
                                "the last one")


def test_a_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 0\nattacks:\n  fgsm: {eps: 0.1\n  pgd: {}\n")
    with pytest.raises(ConfigError, match=rf"config file {path}, line \d+, column \d+: not valid"):
        read_yaml(path)


def test_the_same_key_in_different_mappings_is_fine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: {eps: 1}\nb: {eps: 2}\n")
    assert read_yaml(path) == {"a": {"eps": 1}, "b": {"eps": 2}}


# --- the workflow refuses them before any job, writing nothing ------------------------------

def _battery(default_config, tmp_path):
    empty = tmp_path / "empty_cifar"
    empty.mkdir()
    cases = {
        "attacks.fgsm.eps": ("attacks.fgsm.eps", ".nan"),
        "regimes.normal.learning_rate": ("regimes.normal.learning_rate", ".inf"),
        "regimes.overfit.label_noise": ("regimes.overfit.label_noise", ".nan"),
        "attacks.fgsm.eps=2": ("attacks.fgsm.eps", "2"),
    }
    texts = {}
    for name, (key, value) in cases.items():
        config = yaml.safe_load((ROOT / "config.yaml").read_text())
        _set(config, key, "@@")
        texts[name] = (key, yaml.safe_dump(config).replace("'@@'", value))
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["dataset"] = {"name": "cifar10", "path": str(empty)}
    texts["empty folder"] = ("dataset.path", yaml.safe_dump(config))
    config["dataset"] = {"name": "mnist", "path": str(tmp_path / "no_mnist_here")}
    texts["missing mnist"] = ("dataset.path", yaml.safe_dump(config))
    duplicated = (ROOT / "config.yaml").read_text().replace(
        "    learning_rate: 0.01\n", "    learning_rate: 0.01\n    learning_rate: 0.02\n", 1)
    texts["duplicate key"] = ("learning_rate", duplicated)
    return texts


@pytest.mark.e2e
def test_the_battery_escapes_fail_before_any_job(default_config, tmp_path):
    for name, (key, text) in _battery(default_config, tmp_path).items():
        workdir = tmp_path / name.replace(" ", "_").replace("=", "_")
        workdir.mkdir()
        (workdir / "config.yaml").write_text(text)
        done = run_snakemake(workdir, "--dry-run")
        output = done.stdout + done.stderr
        assert done.returncode != 0, name
        assert f"'{key}'" in output, (name, output[-2000:])
        assert "Job stats" not in output and "rule " not in output, name
        done = run_snakemake(workdir)
        assert done.returncode != 0 and f"'{key}'" in done.stdout + done.stderr, name
        assert not (workdir / "results").exists(), name


@pytest.mark.e2e
def test_a_yaml_error_in_the_default_config_names_file_and_line(tmp_path):
    import subprocess
    import sys

    (tmp_path / "config.yaml").write_text("seed: 0\nattacks:\n  fgsm: {eps: 0.1\n  pgd: {}\n")
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path), "--cores", "1", "--dry-run"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "config file config.yaml, line " in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


# --- accuracy exactly 0 at M: enforced ------------------------------------------------------

def test_logit_margins():
    from advfit.attacks.adversarial_sets import logit_margins

    logits = np.array([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0], [0.0, 5.0, 4.5]])
    y = np.array([0, 0, 0])
    assert np.allclose(logit_margins(logits, y), [-1.0, 0.0, 5.0])  # an exact tie is 0
    target = np.array([2, 1, 1])
    assert np.allclose(logit_margins(logits, y, target), [-1.0, 0.0, 0.5])


@pytest.fixture(scope="module")
def best_model(trained_lenet):
    from advfit.runtime.layout import snapshot_name

    model, history, snapshot_dir = trained_lenet
    model.load_weights(snapshot_dir / snapshot_name(3))
    return model


DEEPFOOL_AT_THE_BOUNDARY = AttackSpec.from_config("deepfool", {"overshoot": 0.0, "max_iter": 50})


def test_near_boundary_aes_are_kept_only_with_a_margin_as_evaluation_sees_them(best_model, digits):
    """DeepFool with no overshoot stops right on the boundary: the worst case."""
    from advfit.attacks.adversarial_sets import craft_adversarial_set, logit_margins
    from advfit.attacks.batching import predict_logits, traced_forward

    x_test, y_test = digits.take(digits.official_test)
    plain = craft_adversarial_set(best_model, x_test, y_test, digits.official_test,
                                  DEEPFOOL_AT_THE_BOUNDARY, 120, seed=1)
    assert plain["n_success"] >= 20  # DeepFool reaches the boundary on most points
    # Scored as evaluate_snapshots scores the set (alone, batches of 1024 from its first
    # row), every kept AE is past the boundary, although most are within 1e-5 of it
    # (on this machine scoring them one at a time flips about a third of them).
    forward = traced_forward(best_model)
    margins = logit_margins(predict_logits(forward, plain["x"], 1024), plain["y"])
    assert np.all(margins > 0) and np.median(margins) < 1e-3
    # A margin threshold drops the AEs closer to the boundary than it, and logs how many.
    strict = craft_adversarial_set(best_model, x_test, y_test, digits.official_test,
                                   DEEPFOOL_AT_THE_BOUNDARY, 120, seed=1, min_margin=0.5)
    assert strict["n_success"] < plain["n_success"]
    margins = logit_margins(predict_logits(forward, strict["x"], 1024), strict["y"])
    assert np.all(margins > 0.5)
    assert set(strict["source_index"]) <= set(plain["source_index"])


def _split(digits):
    train = digits.official_train
    return {"train": train[:1000], "validation": train[1000:], "test": digits.official_test}


def test_the_guard_trips_on_a_set_that_is_not_at_zero(trained_lenet, digits):
    from advfit.attacks.adversarial_sets import predict_labels
    from advfit.evaluation.snapshots import InvariantError, evaluate_split

    model, _, snapshot_dir = trained_lenet
    x_test, y_test = digits.take(digits.official_test)
    right = np.flatnonzero(predict_labels(model, x_test) == y_test)[:3]
    # Three clean, correctly classified test images posing as an adversarial set.
    tampered = {"fake": {"x": x_test[right], "y": y_test[right]}}
    with pytest.raises(InvariantError, match=r"adversarial/fake: 3 of 3 correct"):
        evaluate_split("lenet5", digits, _split(digits), snapshot_dir, 3, tampered)
    rows, _ = evaluate_split("lenet5", digits, _split(digits), snapshot_dir, 3, tampered,
                             nonzero_at_best="warn")
    at_best = [r for r in rows if r["epoch"] == 3 and r["attack"] == "fake"]
    assert at_best[0]["n_correct"] == 3 and at_best[0]["accuracy"] == 1.0


def test_the_guard_stays_quiet_on_a_real_adversarial_set(trained_lenet, digits):
    from advfit.attacks.adversarial_sets import craft_adversarial_set
    from advfit.evaluation.snapshots import evaluate_split

    model, _, snapshot_dir = trained_lenet
    x_test, y_test = digits.take(digits.official_test)
    sets = {name: craft_adversarial_set(model, x_test, y_test, digits.official_test,
                                        AttackSpec.from_config(name, params), 100, seed=3)
            for name, params in [("fgsm", {"eps": 0.1}), ("deepfool", {"overshoot": 0.0})]}
    rows, fail_index = evaluate_split("lenet5", digits, _split(digits), snapshot_dir, 3, sets)
    at_best = [r for r in rows if r["epoch"] == 3 and r["eval_set"] in ("adversarial",
                                                                          "fail_subset")]
    assert len(at_best) == 3 and all(r["n_correct"] == 0 for r in at_best)
    assert all(r["n"] > 0 for r in at_best) and len(fail_index) == at_best[0]["n"]


# --- paper 000: no validation set -----------------------------------------------------------

def test_shuffle_splits_without_validation_keep_the_official_sizes(digits):
    from advfit.data.splits import make_splits

    splits = make_splits(digits, "shuffle", 3, seed=0, validation_fraction=0)
    for split in splits:
        assert len(split["validation"]) == 0
        assert len(split["train"]) == len(digits.official_train)
        assert len(split["test"]) == len(digits.official_test)
        assert not set(split["train"]) & set(split["test"])


def test_training_without_validation_gives_nan_validation_columns(digits, tmp_path):
    from advfit import runtime

    runtime.configure(1, seed=0)
    from advfit.models.architectures import build_model
    from advfit.models.training import train_regime

    model = build_model("lenet5", digits.x.shape[1:], 10)
    regime = {"optimizer": "adam", "learning_rate": 3e-3, "batch_size": 64, "epochs": 2}
    train = digits.take(digits.official_train[:300])
    empty = digits.take(digits.official_train[:0])
    history = train_regime(model, regime, train, empty, digits.take(digits.official_test[:100]),
                           tmp_path, seed=0)
    assert history["val_accuracy"].isna().all() and history["val_loss"].isna().all()
    assert history["test_accuracy"].notna().all() and len(history) == 2


def test_knn_memorises_train_and_validation_when_asked(digits):
    from advfit.knn.experiment import SplitKnn, training_index

    split = _split(digits)
    both = training_index(split, "train_and_validation")
    assert np.array_equal(both, np.sort(np.concatenate([split["train"], split["validation"]])))
    assert len(SplitKnn(digits, split, 3, memorise="train_and_validation").y_train) == len(both)
    with pytest.raises(ValueError, match="memorise"):
        training_index(split, "everything")


def test_vote_tie_rule_reaches_the_classifier():
    from types import SimpleNamespace

    from advfit.knn.experiment import SplitKnn

    # Training points on a line: class 1 at 0, class 0 at 1 and 3, class 2 at 2.1.
    x = np.array([0.0, 1.0, 3.0, 2.1], np.float32).reshape(4, 1, 1, 1)
    y = np.array([1, 0, 0, 2])
    data = SimpleNamespace(x=x, y=y, take=lambda index: (x[index], y[index]))
    split = {"train": np.arange(4), "validation": np.arange(0), "test": np.arange(0)}
    # The query at 0.4 has neighbours 0 (class 1), 1 (class 0), 2.1 (class 2): a 3-way tie.
    query = np.array([0.4], np.float32).reshape(1, 1, 1, 1)
    nearest = SplitKnn(data, split, 3, vote_tie="nearest").predict(query)
    smallest = SplitKnn(data, split, 3, vote_tie="smallest_label").predict(query)
    assert nearest[3].tolist() == [1]   # the tied class met first
    assert smallest[3].tolist() == [0]  # scikit-learn's rule
    assert nearest[1].tolist() == smallest[1].tolist() == [1]  # no tie at K = 1


# --- tests state their side -----------------------------------------------------------------

def test_delta_tests_state_and_honour_their_alternative():
    import pandas as pd
    from scipy import stats

    from advfit.statistics.aggregate import delta_tests

    rows = [{"dataset": "d", "model": "m", "regime": "r", "split": s, "eval_set": e,
             "attack": a, "delta": d}
            for s, (t, f) in enumerate([(-0.1, 0.3), (-0.05, 0.2), (-0.12, 0.25)])
            for e, a, d in [("test", "none", t), ("adversarial", "fgsm", f)]]
    deltas = pd.DataFrame(rows)
    two = delta_tests(deltas).iloc[0]
    greater = delta_tests(deltas, alternative="greater").iloc[0]
    less = delta_tests(deltas, alternative="less").iloc[0]
    assert two.alternative == "two-sided" and greater.alternative == "greater"
    expected = stats.ttest_ind([0.3, 0.2, 0.25], [-0.1, -0.05, -0.12], equal_var=False,
                               alternative="greater").pvalue
    assert math.isclose(greater.p_value, expected) and math.isclose(two.p_value, 2 * expected)
    assert less.p_value > 0.99


def test_slope_tests_state_and_honour_their_alternative():
    from advfit.statistics.slopes import t_test

    adversarial, fail = [2.0, 2.5, 3.1, 2.2], [1.0, 1.2, 1.1, 1.4]
    _, two, _ = t_test("paired", adversarial, fail)
    _, greater, _ = t_test("paired", adversarial, fail, "greater")
    assert math.isclose(two, 2 * greater)
    with pytest.raises(ValueError, match="alternative"):
        t_test("welch", adversarial, fail, "bigger")


def test_the_schema_itself_has_no_key_given_twice():
    """Two sections of one name would silently merge into the last (as a config's would)."""
    from advfit.config import SCHEMA_PATH

    assert read_yaml(SCHEMA_PATH)["properties"]["statistics"]["properties"]["alternative"]
