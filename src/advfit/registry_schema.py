"""JSON-schema fragments written from the attack and metric registries.

The parameters of every attack and metric are described once, in
``advfit.attacks`` (each attack's ``@attack`` declaration) and
``advfit.evaluation.metrics.METRIC_PARAMS``; the
config schema's ``$defs.attack`` and ``$defs.robustness_metric_set`` are
generated from them (``python -m advfit.registry_schema`` prints them,
``--write`` puts them into the schema file) and a test keeps the schema file in
sync. Every property gets a description: the parameter's ``note``, else the
generic one of its name (:data:`GENERIC_NOTES`).
"""

from __future__ import annotations

import json
from pathlib import Path

TARGET_CHOICES = ("none", "random", "next")

# The description of a parameter declared without a note, by its name.
GENERIC_NOTES = {
    "eps": "perturbation budget in the attack's norm, in pixel values scaled to [0, 1]",
    "nb_iter": "iterations, each a step of eps_iter",
    "confidence": "logit margin kappa an AE must reach (0: just across the boundary)",
    "batch_size": "points per call: memory and log granularity",
}

METRIC_DESCRIPTIONS = {
    "clever_u": "CLEVER, untargeted (Weng et al. 2018): per point, an estimate of the smallest "
                "perturbation that changes the prediction, from the local Lipschitz constants "
                "of the logit margins in a ball of radius `radius`; {} takes the defaults",
    "loss_sensitivity": "loss sensitivity (ART's art.metrics.loss_sensitivity): per point, the "
                        "L2 norm of the gradient of the loss at the true label; {} takes the "
                        "defaults",
    "empirical_robustness": "empirical robustness (ART): per point, the smallest FGSM step on "
                            "the grid eps_step, 2 eps_step, ... up to eps that changes the "
                            "prediction, relative to the image's norm; NaN where none does; "
                            "{} takes the defaults",
}


def method_schema(method: str, **schema) -> dict:
    """The ``method`` discriminator of one attack's branch."""
    return {**schema, "description": f"the attack's method: {method}"}


def param_schema(param, name: str | None = None) -> dict:
    schema: dict = {}
    types = param.type if isinstance(param.type, tuple) else (param.type,)
    if param.enum is not None:
        schema["enum"] = list(param.enum)
    else:
        schema["type"] = list(types) if len(types) > 1 else types[0]
    if param.minimum is not None:
        schema["exclusiveMinimum" if param.exclusive_minimum else "minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    if not param.required:
        schema["default"] = param.default
    note = param.note or GENERIC_NOTES.get(name, "")
    if note:
        schema["description"] = note
    return schema


def attack_defs() -> dict:
    from advfit.attacks import ATTACK_PARAMS, PLUGIN, TARGETED

    branches = []
    for method, params in ATTACK_PARAMS.items():
        # method: a mapping (any value; only a description), not True: Snakemake's
        # validate reads every property's schema as a mapping when it fills defaults.
        properties = {"method": method_schema(method),
                      **{name: param_schema(p, name) for name, p in params.items()}}
        if method in TARGETED:
            properties["target"] = {
                "enum": list(TARGET_CHOICES), "default": "none",
                "description": "none (untargeted), random other class, or next class (y+1 mod C)"}
        required = ["method"] + [name for name, p in params.items() if p.required]
        branches.append({"if": {"properties": {"method": method_schema(method, const=method)}},
                         "then": {"additionalProperties": False, "required": required,
                                  "properties": properties}})
    branches.append({"if": {"properties": {"method": method_schema(PLUGIN, const=PLUGIN)}},
                     "then": {"additionalProperties": False, "required": ["method", "function"],
                              "properties": PLUGIN_PROPERTIES}})
    return {"type": "object", "required": ["method"],
            "properties": {"method": {
                "enum": [*ATTACK_PARAMS, PLUGIN],
                "description": "the attack: a built-in method (docs/attacks.md) or plugin (your "
                               "own function); absent, the attack's name in `attacks`"}},
            "allOf": branches}


PLUGIN_PROPERTIES = {
    "method": method_schema("plugin"),
    "function": {"type": "string", "pattern": "^.+:[A-Za-z_][A-Za-z0-9_]*$",
                 "description": "your attack: 'path/to/file.py:function' or 'module:function', "
                                "called as function(model, x, y, *, seed, **params) -> x_adv"},
    "params": {"type": "object", "default": {},
               "description": "keywords passed to the function"},
}


def metric_defs() -> dict:
    from advfit.evaluation.metrics import METRIC_PARAMS

    return {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {
            name: {"type": "object", "additionalProperties": False,
                   "description": METRIC_DESCRIPTIONS[name],
                   "properties": {k: param_schema(p, k) for k, p in params.items()}}
            for name, params in METRIC_PARAMS.items()
        },
    }


SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
# The generated parts are the schema file's last lines, from this one on.
GENERATED_START = "\n  attack:\n"


def generated_yaml() -> str:
    """``$defs.attack`` and ``$defs.robustness_metric_set`` as YAML, at the top level."""
    import yaml

    json.dumps([attack_defs(), metric_defs()])  # the fragments must stay JSON-serialisable
    return yaml.safe_dump({"attack": attack_defs(), "robustness_metric_set": metric_defs()},
                          sort_keys=False, width=100)


def write_schema(path: Path = SCHEMA_PATH) -> None:
    """Replace the generated end of the schema file (``$defs.attack`` on) with
    :func:`generated_yaml`, indented under ``$defs``; the hand-written part stays."""
    text = path.read_text()
    start = text.index(GENERATED_START) + 1
    indented = "".join("  " + line if line.strip() else line
                       for line in generated_yaml().splitlines(True))
    tmp = path.with_name(f".{path.name}.tmp")  # atomic: a killed write leaves the old file
    tmp.write_text(text[:start] + indented)
    tmp.replace(path)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        write_schema()
    else:
        print(generated_yaml())
