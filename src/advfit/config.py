"""Loading and validating a run's configuration.

The JSON schema (``config.schema.yaml``, also at
``workflow/schemas/config.schema.yaml``) checks structure, types and ranges;
:func:`validate_config` adds the checks that need to know the data (subset
sizes against the dataset's size). Every error names the offending key.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from advfit.data.datasets import BUILT_IN, dataset_info
from advfit.limits import cap_problems, cost_problems
from advfit.models.architectures import model_problems
from advfit.plugin_check import plugin_problems
from advfit.data.sources import local_folder

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key."""


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
        # ``not: {anyOf: [{required: [a]}, ...]}`` or ``not: {required: [a]}``
        alternatives = error.validator_value.get("anyOf", [error.validator_value])
        forbidden = [name for alternative in alternatives
                     for name in alternative.get("required", [])]
        present = [name for name in forbidden if name in error.instance]
        what = error.instance.get("name", "this choice")
        return (f"config key '{key}.{present[0] if present else '?'}': does not apply to "
                f"{what}")
    if error.validator == "oneOf" and "description" in error.schema:
        return (f"config key '{key}': {error.instance!r} is none of the allowed forms: "
                f"{error.schema['description']}")
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
    """Return a validated copy of ``config`` with defaults filled in: the three steps
    that the workflow's ``common.smk`` takes, :func:`check_schema`, Snakemake's
    ``validate(..., set_default=True)`` (:func:`fill_defaults`) and :func:`check_config`.

    Raises :class:`ConfigError` listing every problem found, each naming its key.
    """
    config = check_schema(config)
    fill_defaults(config)
    return check_config(config)


# YAML aliases let a few lines stand for billions of values (an "alias bomb"):
# every later walk of the config would hang. No real config comes near this.
MAX_CONFIG_VALUES = 100_000


def expansion_problem(config: Any) -> str | None:
    """A message if ``config``, with every alias expanded, holds more than
    :data:`MAX_CONFIG_VALUES` values or refers to itself; it names the first key,
    from the top, whose value is shared by aliases. Shared values are sized once."""
    sizes: dict[int, float] = {}
    references: dict[int, int] = {}

    def size(node, open_ids=frozenset()) -> float:
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) in open_ids:
            return math.inf  # a value that contains itself
        if id(node) not in sizes:
            children = list(node.values() if isinstance(node, dict) else node)
            for child in children:
                references[id(child)] = references.get(id(child), 0) + 1
            inner = open_ids | {id(node)}
            sizes[id(node)] = 1 + math.fsum(size(child, inner) for child in children)
        return sizes[id(node)]

    total = size(config)
    if total <= MAX_CONFIG_VALUES:
        return None
    path, node = [], config
    while isinstance(node, (dict, list)) and node:  # down the largest branch to an alias
        items = node.items() if isinstance(node, dict) else enumerate(node)
        key, node = max(items, key=lambda item: sizes.get(id(item[1]), 1))
        path.append(key)
        if references.get(id(node), 0) > 1 or len(path) > 20:
            break
    while len(path) > 1 and isinstance(path[-1], int):  # name the key, not a list position
        path.pop()
    what = "refers to itself" if not math.isfinite(total) else f"expands to {total:.3g} values"
    return (f"config key '{_key(path)}': the config {what} through YAML aliases (& and *); "
            f"a config holds at most {MAX_CONFIG_VALUES} values")


def check_schema(config: dict[str, Any]) -> dict[str, Any]:
    """Step 1: a normalised copy of ``config`` (attack ``method`` from its name) if it
    has the schema's structure, types and ranges; else :class:`ConfigError` naming
    every offending key at once (Snakemake's ``validate`` stops at the first, in
    JSON Schema's words)."""
    if not isinstance(config, dict):
        raise ConfigError("config must be a mapping of keys to values")
    if problem := expansion_problem(config):
        raise ConfigError(f"invalid configuration:\n  {problem}")
    config = _normalise(config)
    # JSON Schema's bounds compare false against NaN, so NaN and inf pass
    # every minimum and maximum: refuse them first, whatever the key.
    problems = non_finite_problems(config)
    validator = Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems += [p for p in dict.fromkeys(_describe(e) for e in _leaf_errors(errors))
                 if p not in problems]
    _raise_if(problems)
    return config


def fill_defaults(config: dict[str, Any]) -> None:
    """Step 2 outside a workflow: the schema's defaults, filled in place by Snakemake's
    ``validate(config, schema, set_default=True)``, as ``common.smk`` does."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(SCHEMA_PATH), set_default=True)
    except WorkflowError as error:  # step 1 passed, so only a schema bug gets here
        raise ConfigError(f"invalid configuration: {error}") from None


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Step 3, on a config with the schema's defaults: the checks across keys and
    against the data (subset sizes, budgets, plugins), then the defaults that depend
    on other keys. Returns ``config``; :class:`ConfigError` lists the problems."""
    _raise_if(_semantic_problems(config))
    _fill_derived_defaults(config)
    return config


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def non_finite_problems(node, path=()) -> list[str]:
    """One message per NaN or infinite number anywhere in ``node``, naming its key."""
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in non_finite_problems(value, (*path, key))]
    if isinstance(node, (list, tuple)):
        return [p for i, value in enumerate(node) for p in non_finite_problems(value, (*path, i))]
    if isinstance(node, float) and not math.isfinite(node):
        return [f"config key '{_key(path)}': {node} is not a finite number"]
    return []


def _fill_derived_defaults(config: dict) -> None:
    """Defaults that depend on other keys (the schema's defaults cannot)."""
    knn = config.get("knn")
    if knn and "memorise" not in knn:
        knn["memorise"] = ("train_and_validation" if config["splits"]["method"] == "shuffle"
                           else "train")


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
        if spec["name"] in BUILT_IN and "path" in spec:
            local_folder(spec["name"], spec["path"])  # names the missing files; reads none
        info = dataset_info(spec)
    except (OSError, ValueError) as error:
        return [f"config key 'dataset.path': {error}"]
    for part in ("train", "test"):
        wanted = (spec.get("subset") or {}).get(part)
        if wanted is not None and wanted > getattr(info, f"n_{part}"):
            problems.append(f"config key 'dataset.subset.{part}': {wanted} is larger than the "
                            f"{part} part of {spec['name']} ({getattr(info, f'n_{part}')})")
        if wanted is not None and wanted < info.n_classes:
            problems.append(f"config key 'dataset.subset.{part}': {wanted} images cannot hold "
                            f"one of each of the {info.n_classes} classes of {spec['name']}")
    if config["model"]["name"] == "inception_v3" and min(info.image_shape[:2]) < 75:
        problems.append(f"config key 'model.name': inception_v3 needs images of at least "
                        f"75x75, {spec['name']} has {info.image_shape[0]}x{info.image_shape[1]}")
    problems += model_problems(config, info)  # model.params, model.normalization
    if config["attack_subset_size"] != "all" and config["attack_subset_size"] > info.n_test:
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
    past = [i for i in splits.get("use", []) if i >= splits["n_splits"]]
    if past:
        problems.append(f"config key 'splits.use': splits {past} do not exist: there are "
                        f"{splits['n_splits']} (splits.n_splits), numbered from 0")
    problems += _validation_problems(config)
    from advfit.statistics.robust_selection import best_snapshot_problems  # metric, attack, ...
    problems += best_snapshot_problems(config, info)
    for name, attack in config["attacks"].items():
        problems += budget_problems(f"attacks.{name}", attack, info.image_shape)
    problems += _knn_problems(config)
    problems += _trajectory_problems(config, info)
    problems += _curves_problems(config, info)
    problems += _statistics_problems(config)
    from advfit.models.recipes import recipe_problems  # lr_schedule, weight_decay, augmentation
    problems += recipe_problems(config, info)
    problems += cap_problems(config)  # counts past limits.max_*
    if not problems:  # the run's estimated cost, once its parts are known to fit together
        problems += cost_problems(config, info)
    if not problems:  # the custom model and plugin attacks, checked in a child process
        problems += plugin_problems(config, info.image_shape, info.n_classes)
    metrics = config.get("robustness_metrics")
    if metrics and metrics["n_points"] > info.n_test:
        problems.append(f"config key 'robustness_metrics.n_points': {metrics['n_points']} is "
                        f"larger than the test set of {spec['name']} ({info.n_test} samples)")
    for name, params in (metrics or {}).get("metrics", {}).items():
        problems += budget_problems(f"robustness_metrics.metrics.{name}", params,
                                    info.image_shape)
    for name, regime in config["regimes"].items():
        if "momentum" in regime and regime["optimizer"] != "sgd":
            problems.append(f"config key 'regimes.{name}.momentum': only the sgd optimizer "
                            f"takes a momentum, this regime uses {regime['optimizer']}")
        if "adversarial_training" in regime:  # eps_iter at most eps, in the data's range
            problems += budget_problems(f"regimes.{name}.adversarial_training",
                                        regime["adversarial_training"], info.image_shape)
    return problems


def largest_distance(norm, image_shape) -> float:
    """The largest ``norm`` distance between two images with values in [0, 1]."""
    d = math.prod(image_shape)
    return {"inf": 1.0, 2: math.sqrt(d), 1: float(d)}[norm]


# Keys holding a perturbation budget or step, per norm key: each must fit in
# the data range [0, 1] (a larger L-inf eps clips every pixel to 0 or 1).
_BUDGETS = ("eps", "radius")
_STEPS = {"eps_iter": "eps", "eps_step": "eps"}


def budget_problems(where: str, params: dict, image_shape) -> list[str]:
    """Perturbation sizes outside what images in [0, 1] allow; steps larger than their budget."""
    problems = []
    norm = params.get("norm", "inf")
    norm = "inf" if norm in ("inf", math.inf) else int(norm)
    limit = largest_distance(norm, image_shape)
    for key in _BUDGETS:
        if key in params and params[key] > limit:
            shape = "x".join(map(str, image_shape))
            problems.append(
                f"config key '{where}.{key}': {params[key]} exceeds the largest "
                f"{'L-inf' if norm == 'inf' else f'L{norm}'} distance between {shape} images "
                f"in [0, 1] ({limit:.4g}); perturbation sizes are in the units of pixel "
                f"values scaled to [0, 1]")
    for key, budget in _STEPS.items():
        if key in params and budget in params and params[key] > params[budget]:
            problems.append(f"config key '{where}.{key}': {params[key]} is larger than "
                            f"{budget} ({params[budget]})")
    return problems


def _validation_problems(config: dict) -> list[str]:
    splits = config["splits"]
    if (splits["method"] == "shuffle" and splits.get("validation_fraction") == 0
            and config["best_snapshot"]["metric"] == "val_accuracy"):
        return ["config key 'splits.validation_fraction': 0 leaves no validation set, so "
                "best_snapshot.metric must be test_accuracy (paper 000), not val_accuracy"]
    return []


def _trajectory_problems(config: dict, info) -> list[str]:
    """The white-box and transfer-matrix sections: known attacks, epochs that exist."""
    problems = []
    last_epochs = {name: r["epochs"] for name, r in config["regimes"].items()}
    for section, choice_key in (("snapshot_attacks", "snapshots"),
                                ("transfer_matrix", "craft_epochs"),
                                ("robustness_curves", "snapshots"),
                                ("sanity_checks", "snapshots")):
        spec = config.get(section)
        if not spec:
            continue
        for name in spec.get("attacks", []):
            if name not in config["attacks"]:
                problems.append(f"config key '{section}.attacks': unknown attack {name!r}; "
                                f"defined: {', '.join(config['attacks'])}")
        choice = spec.get(choice_key, "all")
        if isinstance(choice, list):  # each regime takes the listed epochs it has
            longest = max(last_epochs, key=last_epochs.get)
            beyond = [e for e in choice if e > last_epochs[longest]]
            if beyond:
                problems.append(f"config key '{section}.{choice_key}': epochs {beyond} are past "
                                f"the last epoch of every regime (the longest, {longest}, has "
                                f"{last_epochs[longest]}); epochs run from 1 to E")
        if section in ("snapshot_attacks", "sanity_checks") and spec["n_points"] > info.n_test:
            problems.append(f"config key '{section}.n_points': {spec['n_points']} is "
                            f"larger than the test set of {config['dataset']['name']} "
                            f"({info.n_test} samples)")
        if section == "sanity_checks":  # its eps within the data range
            problems += budget_problems(section, spec, info.image_shape)
    return problems


_L2_ONLY_CURVES = ("deepfool", "cw_l2")  # attacks that give minimal L2 norms only


def _curves_problems(config: dict, info) -> list[str]:
    """robustness_curves: the attack's norm and params, the grid, the points, the check."""
    spec = config.get("robustness_curves")
    if not spec:
        return []
    key = "config key 'robustness_curves"
    attack, norm = spec["attack"], "inf" if str(spec["norm"]) == "inf" else 2
    problems = []
    if attack in _L2_ONLY_CURVES and norm == "inf":
        problems.append(f"{key}.norm': {attack} is an L2 attack and gives no minimal L-inf "
                        "norm; use norm 2, or attack fab_t for L-inf")
    grid = list(spec["eps_grid"])
    if grid != sorted(set(grid)):
        problems.append(f"{key}.eps_grid': {grid} must be strictly increasing")
    if spec["n_points"] > info.n_test:
        problems.append(f"{key}.n_points': {spec['n_points']} is larger than the test set of "
                        f"{config['dataset']['name']} ({info.n_test} samples)")
    problems += _curves_params_problems(attack, spec.get("params") or {})
    problems += _curves_check_problems(config, norm)
    return problems


def _curves_params_problems(attack: str, params: dict) -> list[str]:
    """The minimal-norm attack's params, checked as an `attacks` entry of that method;
    its norm is robustness_curves.norm, and fab_t's eps only sizes its restarts."""
    key = "config key 'robustness_curves.params"
    if "norm" in params:
        return [f"{key}.norm': give the norm as robustness_curves.norm"]
    schema = load_schema()
    entry = {"method": attack, **params}
    if attack == "fab_t":
        entry.setdefault("eps", 1.0)  # required of a fixed-eps fab_t, optional here
    validator = Draft202012Validator({**schema["$defs"]["attack"], "$defs": schema["$defs"]})
    return [f"{key}{''.join('.' + str(p) for p in error.absolute_path)}': {error.message}"
            for error in _leaf_errors(validator.iter_errors(entry))]


def _curves_check_problems(config: dict, norm) -> list[str]:
    """The check attack: defined in `attacks`, with an eps, in the curves' norm."""
    name = config["robustness_curves"].get("check_attack")
    if name is None:
        return []
    key = "config key 'robustness_curves.check_attack'"
    entry = config["attacks"].get(name)
    if entry is None:
        return [f"{key}: unknown attack {name!r}; defined: {', '.join(config['attacks'])}"]
    params = (entry.get("params") or {}) if entry.get("method") == "plugin" else entry
    if "eps" not in params:
        return [f"{key}: attack {name!r} has no eps; the check needs a fixed-eps attack"]
    check_norm = "inf" if str(params.get("norm", "inf")) == "inf" else 2
    if check_norm != norm:
        return [f"{key}: attack {name!r} bounds the {check_norm} norm, the curves use "
                f"norm {norm}; the check compares them at one eps of one norm"]
    return []


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


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                raise ConfigError(
                    f"config file {self.name}, line {mark.line + 1}: key {key!r} is given twice "
                    f"in the same mapping (first on line {seen[key] + 1}); YAML would silently "
                    "keep the last one")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> Any:
    """Parse a config file; errors name the file and the line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(filter(None, (exc.context, exc.problem)))
        raise ConfigError(f"config file {path}{where}: not valid YAML ({what})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({exc})") from None
    finally:
        loader.dispose()
    if problem := expansion_problem(data):
        raise ConfigError(f"config file {path}: {problem}")
    return data


def load_config(path: str | Path) -> dict[str, Any]:
    return validate_config(read_yaml(path) or {})


def _main(argv: list[str]) -> int:
    """``python -m advfit.config FILE ...``: check config files as the workflow would.

    Snakemake parses a ``--configfile`` itself before the workflow starts, and
    for a file that is not YAML (or is empty) it says only "Config file is not
    valid JSON or YAML"; this names the file, line and column."""
    import sys

    if not argv:
        print("usage: python -m advfit.config CONFIG.yaml [...]", file=sys.stderr)
        return 2
    failed = 0
    for path in argv:
        try:
            data = read_yaml(path)
            if data is None:
                raise ConfigError(f"config file {path} is empty")
            validate_config(data)
            print(f"{path}: ok")
        except ConfigError as error:
            print(f"{path}: {error}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
