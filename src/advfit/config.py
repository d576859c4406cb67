"""Loading and validating a run's configuration.

The JSON schema (``config.schema.yaml``, also at
``workflow/schemas/config.schema.yaml``) checks structure, types and ranges;
:func:`validate_config` adds the checks that need to know the data (subset
sizes against the dataset's size). Every error names the offending key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from .datasets import dataset_info

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key."""


def _with_defaults(validator_class):
    """A validator that also fills in the schema's defaults."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error) -> str:
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f"{key}." if error.absolute_path else ""
        return (f"config key '{where}{extra[0]}': unknown key"
                + (f" (allowed here: {', '.join(allowed)})" if allowed else ""))
    if error.validator == "required":
        missing = error.message.split("'")[1]
        where = f"{key}." if error.absolute_path else ""
        return f"config key '{where}{missing}': required but missing"
    if error.validator == "propertyNames":
        return f"config key '{key}': name {error.instance!r} must match {error.schema.get('pattern')}"
    if error.validator == "not" and isinstance(error.instance, dict):
        forbidden = [name for alternative in error.validator_value.get("anyOf", [])
                     for name in alternative.get("required", [])]
        present = [name for name in forbidden if name in error.instance]
        what = error.instance.get("name", "this choice")
        return (f"config key '{key}.{present[0] if present else '?'}': does not apply to "
                f"{what}")
    if error.validator == "enum":
        return f"config key '{key}': {error.instance!r} is not one of {error.validator_value}"
    return f"config key '{key}': {error.message}"


def _normalise(config: dict) -> dict:
    """Fill each attack's ``method`` from its name when absent."""
    config = copy.deepcopy(config)
    attacks = config.get("attacks")
    if isinstance(attacks, dict):
        for name, spec in attacks.items():
            if isinstance(spec, dict):
                spec.setdefault("method", name)
    return config


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return a validated copy of ``config`` with defaults filled in.

    Raises :class:`ConfigError` listing every problem found, each naming its key.
    """
    if not isinstance(config, dict):
        raise ConfigError("config must be a mapping of keys to values")
    config = _normalise(config)
    validator = _with_defaults(Draft202012Validator)(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = list(dict.fromkeys(_describe(e) for e in _leaf_errors(errors)))
    if not problems:
        problems = _semantic_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def _leaf_errors(errors):
    """Report what failed inside an if/then rather than the wrapper's summary."""
    for error in errors:
        if error.validator in ("allOf", "if", "then") and error.context:
            yield from _leaf_errors(error.context)
        else:
            yield error


def _semantic_problems(config: dict) -> list[str]:
    problems = []
    spec = config["dataset"]
    try:
        info = dataset_info(spec)
    except (OSError, ValueError) as error:
        return [f"config key 'dataset.path': {error}"]
    for part in ("train", "test"):
        wanted = (spec.get("subset") or {}).get(part)
        if wanted is not None and wanted > getattr(info, f"n_{part}"):
            problems.append(f"config key 'dataset.subset.{part}': {wanted} is larger than the "
                            f"{part} part of {spec['name']} ({getattr(info, f'n_{part}')})")
    if config["model"]["name"] == "inception_v3" and min(info.image_shape[:2]) < 75:
        problems.append(f"config key 'model.name': inception_v3 needs images of at least "
                        f"75x75, {spec['name']} has {info.image_shape[0]}x{info.image_shape[1]}")
    if config["attack_subset_size"] > info.n_test:
        problems.append(
            f"config key 'attack_subset_size': {config['attack_subset_size']} is larger than "
            f"the test set of {config['dataset']['name']} ({info.n_test} samples)")
    splits = config["splits"]
    n_pool = info.n_train if splits["method"] == "kfold" else info.n_train + info.n_test
    per_class = n_pool // info.n_classes
    if splits["n_splits"] > per_class:
        problems.append(
            f"config key 'splits.n_splits': {splits['n_splits']} folds exceed the "
            f"~{per_class} samples per class of {config['dataset']['name']}")
    for name, attack in config["attacks"].items():
        if "eps_iter" in attack and attack["eps_iter"] > attack["eps"]:
            problems.append(f"config key 'attacks.{name}.eps_iter': {attack['eps_iter']} "
                            f"is larger than eps ({attack['eps']})")
    problems += _knn_problems(config)
    problems += _statistics_problems(config)
    metrics = config.get("robustness_metrics")
    if metrics and metrics["n_points"] > info.n_test:
        problems.append(f"config key 'robustness_metrics.n_points': {metrics['n_points']} is "
                        f"larger than the test set of {spec['name']} ({info.n_test} samples)")
    for name, regime in config["regimes"].items():
        if "momentum" in regime and regime["optimizer"] != "sgd":
            problems.append(f"config key 'regimes.{name}.momentum': only the sgd optimizer "
                            f"takes a momentum, this regime uses {regime['optimizer']}")
    return problems


def _statistics_problems(config: dict) -> list[str]:
    """Epoch numbers of the paired tests must exist in every regime."""
    shortest = min(regime["epochs"] for regime in config["regimes"].values())
    problems = []
    for i, pair in enumerate(config["statistics"]["paired_epochs"]):
        for epoch in pair:
            if isinstance(epoch, int) and epoch > shortest:
                problems.append(f"config key 'statistics.paired_epochs.{i}': epoch {epoch} is "
                                f"beyond the shortest regime ({shortest} epochs)")
    return problems


def _knn_problems(config: dict) -> list[str]:
    spec = config.get("knn")
    if not spec:
        return []
    problems = []
    if spec["regime"] not in config["regimes"]:
        problems.append(f"config key 'knn.regime': unknown regime {spec['regime']!r}; "
                        f"defined: {', '.join(config['regimes'])}")
    for name in spec.get("attacks", []):
        if name not in config["attacks"]:
            problems.append(f"config key 'knn.attacks': unknown attack {name!r}; "
                            f"defined: {', '.join(config['attacks'])}")
    return problems


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    return validate_config(raw or {})
