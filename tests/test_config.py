"""The configuration is checked before any job runs; every error names its key."""

import pytest
import yaml

from advfit.config import ConfigError, load_config, validate_config


def test_default_config_is_valid_and_gets_defaults(default_config):
    config = validate_config(default_config)
    assert config["attacks"]["fgsm"]["method"] == "fgsm"
    assert config["attacks"]["fgsm"]["norm"] == "inf"  # schema default filled in
    assert config["attacks"]["pgd"]["rand_init"] is True
    assert config["evaluation"]["batch_size"] == 1024


def test_snakemakes_validate_fills_the_defaults_and_they_pass_the_schema(default_config):
    """Step 2 is Snakemake's own validate(set_default=True): every property schema must
    be a mapping it can read, and the config it fills must pass step 1 again."""
    from snakemake.utils import validate

    from advfit.config import SCHEMA_PATH, check_config, check_schema, load_schema

    def property_schemas(node):
        if isinstance(node, dict):
            for sub in (node.get("properties") or {}).values():
                yield sub
            for value in node.values():
                yield from property_schemas(value)
        elif isinstance(node, list):
            for value in node:
                yield from property_schemas(value)

    assert all(isinstance(sub, dict) for sub in property_schemas(load_schema()))
    config = check_schema(default_config)
    assert "statistics" not in config and "norm" not in config["attacks"]["fgsm"]
    validate(config, str(SCHEMA_PATH), set_default=True)
    assert config["statistics"]["confidence"] == 0.95
    assert config["attacks"]["fgsm"]["norm"] == "inf"
    assert check_config(check_schema(config)) == validate_config(default_config)


def test_attack_subset_size_all_is_valid(default_config):
    default_config["attack_subset_size"] = "all"
    assert validate_config(default_config)["attack_subset_size"] == "all"


def test_validation_does_not_modify_its_argument(default_config):
    before = repr(default_config)
    validate_config(default_config)
    assert repr(default_config) == before


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})  # a section the default config leaves out
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

REJECTED = [
    # (key to change, new value, text the message must contain)
    ("regimes.normal.epochs", 0, "regimes.normal.epochs"),
    ("regimes.overfit.epochs", "20", "regimes.overfit.epochs"),
    ("regimes.normal.learning_rate", 0, "regimes.normal.learning_rate"),
    ("regimes.normal.optimizer", "adagrad", "regimes.normal.optimizer"),
    ("splits.n_splits", 1, "splits.n_splits"),
    ("splits.method", "bootstrap", "splits.method"),
    ("attacks.fgsm.eps", 0, "attacks.fgsm.eps"),
    ("attacks.pgd.eps", -0.1, "attacks.pgd.eps"),
    ("attacks.pgd.nb_iter", 2.5, "attacks.pgd.nb_iter"),
    ("dataset.name", "imagenet", "dataset.name"),
    ("model.name", "resnet50", "model.name"),
    ("attack_subset_size", 361, "attack_subset_size"),
    ("attack_subset_size", 0, "attack_subset_size"),
    ("attack_subset_size", "most", "attack_subset_size"),
    ("best_snapshot.metric", "train_accuracy", "best_snapshot.metric"),
    ("distances.l2_convention", "euclid", "distances.l2_convention"),
    ("seed", -1, "seed"),
    ("dataset.nme", "digits", "dataset.nme"),
    ("epochs", 20, "epochs"),
    ("attacks.fgsm.epsilon", 0.3, "attacks.fgsm.epsilon"),
    ("attacks.pgd.eps_iter", 0.5, "attacks.pgd.eps_iter"),
    ("regimes.normal.momentum", 1.0, "regimes.normal.momentum"),
    ("regimes.overfit.momentum", 0.9, "regimes.overfit.momentum"),
    ("splits.n_splits", 1000, "splits.n_splits"),
    ("best_snapshot", _DELETE, "best_snapshot"),
    ("regimes.normal.batch_size", _DELETE, "regimes.normal.batch_size"),
    ("regimes.overfit.label_noise", -0.1, "regimes.overfit.label_noise"),
    ("regimes.overfit.label_noise", 1.0, "regimes.overfit.label_noise"),
    ("regimes.overfit.label_noise", 1, "regimes.overfit.label_noise"),
    ("regimes.normal.label_noise", "0.3", "regimes.normal.label_noise"),
    ("regimes.normal.label_noise", True, "regimes.normal.label_noise"),
    ("statistics.confidence", 1.0, "statistics.confidence"),
    ("statistics.confidence", 0, "statistics.confidence"),
    ("statistics.alternative", "bigger", "statistics.alternative"),
    ("statistics.paired_epochs", [["best", 21]], "statistics.paired_epochs.0"),
    ("statistics.paired_epochs", [["best"]], "statistics.paired_epochs.0"),
]


@pytest.mark.parametrize("key,value,named", REJECTED, ids=[f"{k}={v!r}" for k, v, _ in REJECTED])
def test_bad_values_are_rejected_naming_the_key(default_config, key, value, named):
    _set(default_config, key, value)
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert f"'{named}'" in str(error.value)


def test_unknown_attack_name_is_rejected(default_config):
    default_config["attacks"]["deepfoo"] = {"eps": 0.1}
    with pytest.raises(ConfigError, match=r"attacks\.deepfoo\.method.*'deepfoo' is not one of"):
        validate_config(default_config)


def test_named_attack_variant_uses_its_method(default_config):
    default_config["attacks"]["fgsm_small"] = {"method": "fgsm", "eps": 0.05}
    config = validate_config(default_config)
    assert config["attacks"]["fgsm_small"]["method"] == "fgsm"


@pytest.mark.parametrize("name", ["Normal", "over fit", "1st", "a/b"])
def test_regime_names_must_be_safe_for_paths(default_config, name):
    default_config["regimes"][name] = default_config["regimes"]["normal"]
    with pytest.raises(ConfigError, match=r"config key 'regimes'"):
        validate_config(default_config)


def test_reserved_attack_name_none_is_rejected(default_config):
    default_config["attacks"]["none"] = {"method": "fgsm", "eps": 0.1}
    with pytest.raises(ConfigError, match=r"config key 'attacks'"):
        validate_config(default_config)


def test_every_problem_is_reported_at_once(default_config):
    default_config["regimes"]["normal"]["epochs"] = 0
    default_config["splits"]["n_splits"] = 1
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert "regimes.normal.epochs" in str(error.value)
    assert "splits.n_splits" in str(error.value)


def test_load_config_names_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_optional_sections_get_their_defaults(default_config):
    del default_config["evaluation"], default_config["distances"]
    config = validate_config(default_config)
    assert config["evaluation"] == {"batch_size": 1024, "nonzero_at_best": "error"}
    assert config["distances"] == {"l2_convention": "channels"}


def test_label_noise_is_optional_and_left_out_when_absent(default_config):
    from pathlib import Path

    import yaml

    default_config["regimes"]["normal"].pop("label_noise", None)
    default_config["regimes"]["overfit"]["label_noise"] = 0
    config = validate_config(default_config)
    assert "label_noise" not in config["regimes"]["normal"]  # no default: specs stay as written
    assert config["regimes"]["overfit"]["label_noise"] == 0
    # The papers' protocols train on the true labels: no shipped paper config uses the knob.
    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        regimes = yaml.safe_load(path.read_text())["regimes"]
        assert not any("label_noise" in regime for regime in regimes.values()), path.name


@pytest.mark.parametrize("dataset,named", [
    ({"name": "digits", "path": "somewhere"}, "dataset.path"),
    ({"name": "mnist", "verify": False}, "dataset"),
    ({"name": "npz"}, "dataset.path"),
    ({"name": "npz", "path": "/nonexistent/data.npz"}, "dataset.path"),
    ({"name": "image_folder", "path": "x"}, "dataset.size"),
    ({"name": "cifar10", "path": "x", "sha256": "abc"}, "dataset.sha256"),
    ({"name": "digits", "subset": {"train": 5000}}, "dataset.subset.train"),
    ({"name": "digits", "subset": {"validation": 50}}, "dataset.subset.validation"),
])
def test_bad_dataset_sections_are_rejected(default_config, dataset, named):
    default_config["dataset"] = dataset
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert f"'{named}" in str(error.value)


def test_inception_needs_large_images(default_config):
    default_config["model"]["name"] = "inception_v3"
    with pytest.raises(ConfigError, match=r"'model.name': inception_v3 needs images of at least 75x75"):
        validate_config(default_config)


def test_user_npz_sizes_are_read_before_any_job(default_config, tmp_path):
    import numpy as np

    path = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (40, 12, 12), dtype=np.uint8),
             y_train=np.arange(40) % 4, x_test=rng.integers(0, 256, (20, 12, 12), dtype=np.uint8),
             y_test=np.arange(20) % 4)
    default_config["dataset"] = {"name": "npz", "path": str(path)}
    default_config["attack_subset_size"] = 21
    with pytest.raises(ConfigError, match=r"'attack_subset_size': 21 is larger than the test set of npz \(20"):
        validate_config(default_config)
    default_config["attack_subset_size"] = 20
    default_config["snapshot_attacks"]["n_points"] = 20
    default_config["splits"]["n_splits"] = 2
    assert validate_config(default_config)["dataset"]["path"] == str(path)


@pytest.mark.parametrize("knn,message", [
    ({"z": 7, "regime": "underfit"}, "'knn.regime': unknown regime 'underfit'"),
    ({"z": 6, "regime": "overfit"}, "'knn.z'"),
    ({"z": 7, "regime": "overfit", "attacks": ["cw"]}, "'knn.attacks': unknown attack 'cw'"),
    ({"z": 7, "regime": "overfit", "algorithm": "ball_tree"}, "'knn.algorithm'"),
])
def test_bad_knn_sections_are_rejected(default_config, knn, message):
    default_config["knn"] = knn
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert message in str(error.value)


def test_schema_file_is_in_sync_with_the_registries():
    import yaml

    from advfit.config import SCHEMA_PATH
    from advfit.registry_schema import attack_defs, metric_defs

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert schema["$defs"]["attack"] == attack_defs()
    assert schema["$defs"]["robustness_metric_set"] == metric_defs()


@pytest.mark.parametrize("spec,message", [
    ({"method": "cw_l2", "confidence": -1}, "'attacks.x.confidence'"),
    ({"method": "deepfool", "max_iter": 0}, "'attacks.x.max_iter'"),
    ({"method": "deepfool", "target": "random"}, "'attacks.x.target'"),
    ({"method": "hopskipjump", "norm": 1}, "'attacks.x.norm'"),
    ({"method": "bim", "eps": 0.1, "eps_iter": 0.2, "nb_iter": 3}, "'attacks.x.eps_iter'"),
    ({"method": "fgsm", "eps": 0.1, "target": "all"}, "'attacks.x.target'"),
])
def test_attack_parameters_are_checked_per_method(default_config, spec, message):
    default_config["attacks"]["x"] = spec
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert message in str(error.value)


def test_every_attack_and_metric_with_defaults_is_accepted(default_config):
    default_config["snapshot_attacks"]["attacks"] = ["bim"]
    default_config["knn"].pop("attacks")  # KNN then takes every attack
    default_config["attacks"] = {"fgsm": {"eps": 0.1}, "cw_l2": {}, "deepfool": {},
                                 "hopskipjump": {}, "fgsm_art": {"eps": 0.1},
                                 "pgd_art": {"eps": 0.1, "eps_iter": 0.01, "nb_iter": 5},
                                 "bim": {"eps": 0.1, "eps_iter": 0.01, "nb_iter": 5},
                                 "fgsm_target": {"method": "fgsm", "eps": 0.1, "target": "next"}}
    default_config["robustness_metrics"] = {"n_points": 10, "metrics": {
        "clever_u": {}, "loss_sensitivity": {}, "empirical_robustness": {}}}
    config = validate_config(default_config)
    assert config["attacks"]["deepfool"]["max_iter"] == 100
    assert config["attacks"]["fgsm"]["target"] == "none"
    assert config["robustness_metrics"]["metrics"]["clever_u"]["norm"] == 2


def test_metric_sample_larger_than_test_set_is_rejected(default_config):
    default_config["robustness_metrics"] = {"n_points": 361, "metrics": {"loss_sensitivity": {}}}
    with pytest.raises(ConfigError, match=r"'robustness_metrics.n_points': 361 is larger"):
        validate_config(default_config)


def test_readme_attack_table_shows_the_declared_defaults(root):
    """The docs' attack table (docs/attacks.md, "Attacks", linked from the README) repeats the
    defaults for readers; it must say what the code does."""
    import re

    from advfit.attacks import ATTACK_PARAMS

    checked = set()
    for line in (root / "docs" / "attacks.md").read_text().splitlines():
        row = re.match(r"^\| `(\w+)` \| .* \| ([^|]*) \|$", line)
        if not row or row.group(1) not in ATTACK_PARAMS:
            continue
        method, cell = row.groups()
        shown = dict(re.findall(r"`(\w+)` ([^,`]+)", cell))
        declared = ATTACK_PARAMS[method]
        for name, value in shown.items():
            if value.startswith("(required)"):
                assert declared[name].required, (method, name)
            else:
                assert yaml.safe_load(value.split(" (")[0]) == declared[name].default, (method, name)
        assert set(shown) >= {n for n, p in declared.items() if not p.required}, method
        checked.add(method)
    assert checked == set(ATTACK_PARAMS) - {"fgsm_art", "pgd_art"}  # "as fgsm, pgd"


# ---------------------------------------------------------------- adversarial training

PGD_AT = {"attack": "pgd", "eps": 0.1, "eps_iter": 0.025, "nb_iter": 5}


def test_adversarial_training_is_optional_and_gets_its_defaults(default_config):
    default_config["regimes"]["overfit"]["adversarial_training"] = dict(PGD_AT)
    config = validate_config(default_config)
    assert "adversarial_training" not in config["regimes"]["normal"]  # absent stays absent
    assert config["regimes"]["overfit"]["adversarial_training"] == {
        **PGD_AT, "fraction": 1.0, "rand_init": True}


@pytest.mark.parametrize("change,named", [
    ({"attack": "fgsm"}, "'regimes.overfit.adversarial_training.attack'"),
    ({"attack": "cw_l2"}, "'regimes.overfit.adversarial_training.attack'"),
    ({"fraction": 1.5}, "'regimes.overfit.adversarial_training.fraction'"),
    ({"fraction": -0.1}, "'regimes.overfit.adversarial_training.fraction'"),
    ({"eps": 0}, "'regimes.overfit.adversarial_training.eps'"),
    ({"eps": 1.5}, "'regimes.overfit.adversarial_training.eps'"),
    ({"eps_iter": 0.2}, "'regimes.overfit.adversarial_training.eps_iter'"),  # > eps
    ({"eps_iter": 0}, "'regimes.overfit.adversarial_training.eps_iter'"),
    ({"nb_iter": 0}, "'regimes.overfit.adversarial_training.nb_iter'"),
    ({"nb_iter": 2.5}, "'regimes.overfit.adversarial_training.nb_iter'"),
    ({"rand_init": "yes"}, "'regimes.overfit.adversarial_training.rand_init'"),
    ({"norm": 2}, "'regimes.overfit.adversarial_training.norm'"),  # L-inf only, no norm key
    ({"nb_iter": None}, "'regimes.overfit.adversarial_training.nb_iter'"),
])
def test_bad_adversarial_training_is_rejected_naming_the_key(default_config, change, named):
    spec = {**PGD_AT, **change}
    default_config["regimes"]["overfit"]["adversarial_training"] = spec
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert named in str(error.value)


@pytest.mark.parametrize("missing", ["attack", "eps", "eps_iter", "nb_iter"])
def test_adversarial_training_needs_its_attack_parameters(default_config, missing):
    spec = {k: v for k, v in PGD_AT.items() if k != missing}
    default_config["regimes"]["normal"]["adversarial_training"] = spec
    with pytest.raises(ConfigError,
                       match=rf"'regimes\.normal\.adversarial_training\.{missing}': required"):
        validate_config(default_config)


def test_adversarial_training_step_equal_to_eps_and_fraction_bounds_are_accepted(default_config):
    for fraction in (0, 0.5, 1):
        default_config["regimes"]["overfit"]["adversarial_training"] = {
            **PGD_AT, "eps_iter": 0.1, "fraction": fraction, "rand_init": False}
        validate_config(default_config)


def test_clever_repeats_below_one_are_rejected(default_config):
    default_config["robustness_metrics"] = {"n_points": 10, "clever_repeats": 0,
                                            "metrics": {"clever_u": {}}}
    with pytest.raises(ConfigError, match=r"'robustness_metrics.clever_repeats'"):
        validate_config(default_config)
    default_config["robustness_metrics"]["clever_repeats"] = 2
    assert validate_config(default_config)["statistics"] == {
        "confidence": 0.95, "alternative": "two-sided", "paired_epochs": [["best", "last"]],
        "bootstrap_resamples": 2000}
