"""JSON-schema fragments written from the attack and metric registries.

The parameters of every attack and metric are described once, in
``advfit.attacks`` (each attack's ``@attack`` declaration) and
``advfit.evaluation.metrics.METRIC_PARAMS``; the
config schema's ``$defs.attack`` and ``$defs.robustness_metric_set`` are
generated from them (``python -m advfit.registry_schema`` prints them) and a
test keeps the schema file in sync.
"""

from __future__ import annotations

import json

TARGET_CHOICES = ("none", "random", "next")


def param_schema(param) -> dict:
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
    if param.note:
        schema["description"] = param.note
    return schema


def attack_defs() -> dict:
    from advfit.attacks import ATTACK_PARAMS, PLUGIN, TARGETED

    branches = []
    for method, params in ATTACK_PARAMS.items():
        # {} (any value), not True: Snakemake's validate reads every property's schema
        # as a mapping when it fills defaults.
        properties = {"method": {}, **{name: param_schema(p) for name, p in params.items()}}
        if method in TARGETED:
            properties["target"] = {
                "enum": list(TARGET_CHOICES), "default": "none",
                "description": "none (untargeted), random other class, or next class (y+1 mod C)"}
        required = ["method"] + [name for name, p in params.items() if p.required]
        branches.append({"if": {"properties": {"method": {"const": method}}},
                         "then": {"additionalProperties": False, "required": required,
                                  "properties": properties}})
    branches.append({"if": {"properties": {"method": {"const": PLUGIN}}},
                     "then": {"additionalProperties": False, "required": ["method", "function"],
                              "properties": PLUGIN_PROPERTIES}})
    return {"type": "object", "required": ["method"],
            "properties": {"method": {"enum": [*ATTACK_PARAMS, PLUGIN]}}, "allOf": branches}


PLUGIN_PROPERTIES = {
    "method": {},
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
                   "properties": {k: param_schema(p) for k, p in params.items()}}
            for name, params in METRIC_PARAMS.items()
        },
    }


if __name__ == "__main__":
    import yaml

    print(yaml.safe_dump({"attack": attack_defs(), "robustness_metric_set": metric_defs()},
                         sort_keys=False, width=100))
    json.dumps(attack_defs())  # the fragments must stay JSON-serialisable
