"""Upper bounds on a run's counts and on its estimated cost, checked before any job.

A mistyped count (``epochs: 1000000000``, ``nb_iter: 1000000000``) passes every
schema minimum and then trains for days or hangs in the first batch. Two
checks, both configurable under ``limits:``:

- **caps per key**: every epoch, iteration, query and point count anywhere in
  the config (attack parameters, adversarial training, metrics, plugin
  parameters too) against ``max_epochs``, ``max_iterations``, ``max_queries``
  and ``max_points``;
- **a cost estimate** of the whole run in *image passes* (one forward and
  backward pass of one image): training, crafting, evaluation, the white-box
  view, the transfer matrix, the metrics and experiment KNN, over every split
  and regime, against ``max_image_passes``. It is an order of magnitude, not a
  prediction: an attack's passes per point are the product of its iteration,
  restart, query and class counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Which cap bounds which key, wherever the key appears.
CAPPED = {
    "max_iterations": ("nb_iter", "max_iter", "binary_search_steps", "nb_batches",
                       "max_doubling", "max_halving", "restarts", "num_random_init",
                       "clever_repeats", "nb_grads"),
    "max_queries": ("max_eval", "init_eval", "init_size", "queries", "n_queries"),
    "max_points": ("n_points", "batch_size", "attack_subset_size", "pool_factor"),
}
# An attack's passes per point: the product of those of these keys it has.
_PER_POINT = ("nb_iter", "max_iter", "binary_search_steps", "max_eval", "restarts",
              "num_random_init", "nb_grads")


@dataclass(frozen=True)
class Part:
    """One term of the cost estimate: what it is, the key that sets it, its passes."""
    what: str
    key: str
    passes: float


def cap_problems(config: dict) -> list[str]:
    """Every count above its cap, naming the key and the cap's key."""
    limits = config["limits"]
    problems = [
        f"config key 'regimes.{name}.epochs': {regime['epochs']} is above limits.max_epochs "
        f"({limits['max_epochs']}); raise limits.max_epochs if you mean it"
        for name, regime in config["regimes"].items() if regime["epochs"] > limits["max_epochs"]]
    for path, value in _counts(config):
        for cap, keys in CAPPED.items():
            if path[-1] in keys and value > limits[cap]:
                problems.append(f"config key '{'.'.join(map(str, path))}': {value} is above "
                                f"limits.{cap} ({limits[cap]}); raise limits.{cap} if you "
                                f"mean it")
    return problems


def _counts(node, path=()):
    """(key path, value) of every integer anywhere in ``node`` but ``limits`` itself."""
    if isinstance(node, dict):
        for key, value in node.items():
            if path or key != "limits":
                yield from _counts(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _counts(value, (*path, i))
    elif isinstance(node, (int, float)) and not isinstance(node, bool) and path:
        yield path, node


def passes_per_point(params: dict) -> float:
    """An attack's image passes per attacked point: the product of its counts."""
    cost = 1.0
    for key in _PER_POINT:
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            cost *= value
    return cost


def cost_parts(config: dict, info) -> list[Part]:
    """The run's cost estimate, term by term, in image passes."""
    n_splits = len(config["splits"].get("use", range(config["splits"]["n_splits"])))
    regimes = config["regimes"]
    attacks = config["attacks"]
    n_train, n_test = info.n_train, info.n_test
    attacked = n_test if config["attack_subset_size"] == "all" else config["attack_subset_size"]
    parts = []
    for name, regime in regimes.items():
        runs, epochs = n_splits, regime["epochs"]
        at = regime.get("adversarial_training")
        per_image = 1 + (at.get("fraction", 1.0) * at["nb_iter"] if at else 0)
        steps = f" x (1 + {at.get('fraction', 1.0):g} x {at['nb_iter']} PGD steps)" if at else ""
        parts.append(Part(f"training, regime {name} ({runs} splits x {epochs} epochs x "
                          f"{n_train} images{steps})",
                          f"regimes.{name}" if at else f"regimes.{name}.epochs",
                          runs * epochs * (n_train * per_image + n_test)))
        # every snapshot on every set (forward passes)
        parts.append(Part(f"evaluation, regime {name}", f"regimes.{name}.epochs",
                          runs * epochs * (n_train + n_test * 2 + attacked * len(attacks))))
        parts += _views(config, name, runs, epochs, attacked, info)
    for attack, params in attacks.items():
        parts.append(Part(f"crafting, attack {attack}", f"attacks.{attack}",
                          n_splits * len(regimes) * attacked * passes_per_point(params)))
    for attack in (config.get("knn") or {}).get("attacks", list(attacks) if config.get("knn")
                                                else []):
        parts.append(Part(f"experiment KNN, attack {attack}", f"attacks.{attack}",
                          n_splits * attacked * passes_per_point(attacks.get(attack, {}))))
    return parts


def _views(config: dict, regime: str, runs: int, epochs: int, attacked: int,
           info=None) -> list[Part]:
    """The white-box view, the transfer matrix and the metrics of one regime."""
    attacks, parts = config["attacks"], []
    spec = config.get("snapshot_attacks")
    if spec:
        snapshots = _n_snapshots(spec.get("snapshots", "all"), epochs)
        for attack in spec["attacks"]:
            parts.append(Part(f"white-box view, attack {attack}, regime {regime}",
                              "snapshot_attacks.n_points",
                              runs * snapshots * spec["n_points"]
                              * passes_per_point(attacks.get(attack, {}))))
    spec = config.get("transfer_matrix")
    if spec:
        crafted = _n_snapshots(spec.get("craft_epochs", []), epochs) + 1
        for attack in spec.get("attacks", list(attacks)):
            parts.append(Part(f"transfer matrix, attack {attack}, regime {regime}",
                              "transfer_matrix.craft_epochs",
                              runs * crafted * attacked * (passes_per_point(attacks.get(attack, {}))
                                                           + epochs)))
    spec = config.get("robustness_curves")
    if spec:
        params = spec.get("params") or {}
        per_point = (params.get("nb_iter", 100) * params.get("n_target_classes", 9)
                     * params.get("restarts", 1))
        parts.append(Part(f"robustness curves, regime {regime}", "robustness_curves.n_points",
                          runs * _n_snapshots(spec.get("snapshots", "all"), epochs)
                          * spec["n_points"] * per_point))
    spec = config.get("sanity_checks")
    if spec:  # three APGD-CE runs of 100 iterations and Square's queries per point
        parts.append(Part(f"sanity checks, regime {regime}", "sanity_checks.n_points",
                          runs * _n_snapshots(spec.get("snapshots", "all"), epochs)
                          * spec["n_points"] * (300 + spec.get("n_queries", 1000))))
    spec = config["best_snapshot"]
    if spec["metric"] == "val_robust_accuracy" and spec.get("attack") in attacks:
        # the validation sample of every k-th snapshot and the last, attacked
        from advfit.statistics.robust_selection import evaluated_epochs, validation_size

        n_points = spec.get("n_points", "all")
        points = validation_size(config, info) if n_points == "all" else n_points
        parts.append(Part(f"best snapshot by robust validation accuracy, regime {regime}",
                          "best_snapshot.n_points",
                          runs * len(evaluated_epochs(range(1, epochs + 1), spec.get("every", 1)))
                          * points * (passes_per_point(attacks[spec["attack"]]) + 1)))
    spec = config.get("robustness_metrics")
    if spec:
        clever = spec["metrics"].get("clever_u")
        per_point = len(spec["metrics"])
        if clever:
            per_point += (clever.get("nb_batches", 1) * clever.get("batch_size", 1)
                          * spec.get("clever_repeats", 1))
        parts.append(Part(f"robustness metrics, regime {regime}", "robustness_metrics.n_points",
                          runs * epochs * spec["n_points"] * per_point))
    return parts


def _n_snapshots(choice, epochs: int) -> int:
    if choice in (None, "all"):
        return epochs
    if isinstance(choice, dict):
        return epochs // choice["every"] + 2
    return len(choice) + 2


def cost_problems(config: dict, info) -> list[str]:
    """The run's estimate against ``limits.max_image_passes``, naming its largest parts."""
    budget = config["limits"]["max_image_passes"]
    parts = sorted(cost_parts(config, info), key=lambda p: p.passes, reverse=True)
    total = math.fsum(p.passes for p in parts)
    if total <= budget:
        return []
    by_key: dict[str, float] = {}
    for part in parts:
        by_key[part.key] = by_key.get(part.key, 0.0) + part.passes
    key = max(by_key, key=by_key.get)
    largest = "; ".join(f"{p.what} ({p.key}): {p.passes:.3g}" for p in parts[:3])
    return [f"config key '{key}': the run's cost estimate is {total:.3g} image passes "
            f"(one forward and backward pass of one image), above limits.max_image_passes "
            f"({budget:.3g}); largest parts: {largest}. Lower the counts or raise "
            f"limits.max_image_passes if you mean it"]


