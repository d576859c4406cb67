"""Every key of the config schema says what it is (issue 26).

Each property, at any depth (``properties`` and ``patternProperties`` of the
schema and of its ``$defs``, ``if``/``then``/``else``, ``allOf``/``anyOf``/
``oneOf``, ``items``, ``additionalProperties``, ...), has a non-empty
``description``; a property that is only a ``$ref`` takes the description of
what it refers to. Code-side defaults that the schema must not fill in (with
Snakemake's ``validate(..., set_default=True)`` they would change what a config
resolves to) are stated in the description ("Absent: ...").
"""

from __future__ import annotations

from advfit.config import load_schema
from advfit.registry_schema import attack_defs, metric_defs

# Keywords whose value is one schema, a list of schemas, or a map of names to schemas.
ONE = ("items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems",
       "contains", "propertyNames", "not", "if", "then", "else")
MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
BY_NAME = ("$defs", "definitions", "dependentSchemas")
PROPERTIES = ("properties", "patternProperties")


def undescribed(schema, where: str = "") -> list[str]:
    """The paths of the properties under ``schema`` without a description."""
    if not isinstance(schema, dict):
        return []
    missing = []
    for keyword in PROPERTIES:
        for name, sub in (schema.get(keyword) or {}).items():
            path = f"{where}/{keyword}/{name}"
            only_ref = isinstance(sub, dict) and set(sub) == {"$ref"}
            described = isinstance(sub, dict) and str(sub.get("description") or "").strip()
            if not (only_ref or described):
                missing.append(path)
            missing += undescribed(sub, path)
    for keyword in ONE:
        missing += undescribed(schema.get(keyword), f"{where}/{keyword}")
    for keyword in MANY:
        for i, sub in enumerate(schema.get(keyword) or []):
            missing += undescribed(sub, f"{where}/{keyword}/{i}")
    for keyword in BY_NAME:
        for name, sub in (schema.get(keyword) or {}).items():
            missing += undescribed(sub, f"{where}/{keyword}/{name}")
    return missing


def test_every_property_of_the_schema_has_a_description():
    missing = undescribed(load_schema())
    assert not missing, (f"{len(missing)} schema properties without a description:\n  "
                         + "\n  ".join(missing))


def test_the_generated_parts_describe_every_property():
    """The registries' fragments themselves (what ``--write`` puts into the file)."""
    missing = (undescribed(attack_defs(), "/$defs/attack")
               + undescribed(metric_defs(), "/$defs/robustness_metric_set"))
    assert not missing, "\n  ".join(["generated properties without a description:", *missing])


def test_the_walk_finds_properties_at_every_depth():
    """The check can fail: undescribed properties in each kind of place are named."""
    schema = {
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "integer"}}},
            "ref": {"$ref": "#/$defs/x"},
            "ref_default": {"$ref": "#/$defs/x", "default": "all"},
            "ok": {"description": "fine", "items": {"properties": {"c": {}}}},
        },
        "patternProperties": {"^p": {"type": "string"}},
        "additionalProperties": {"properties": {"d": {"description": " "}}},
        "allOf": [{"if": {"properties": {"e": {"const": 1}}},
                   "then": {"properties": {"f": {}}}, "else": {"properties": {"g": {}}}}],
        "oneOf": [{"properties": {"h": {}}}],
        "$defs": {"x": {"oneOf": [{"properties": {"every": {"type": "integer"}}}]}},
    }
    assert sorted(undescribed(schema)) == sorted([
        "/properties/a", "/properties/a/properties/b", "/properties/ref_default",
        "/properties/ok/items/properties/c", "/patternProperties/^p",
        "/additionalProperties/properties/d", "/allOf/0/if/properties/e",
        "/allOf/0/then/properties/f", "/allOf/0/else/properties/g", "/oneOf/0/properties/h",
        "/$defs/x/oneOf/0/properties/every",
    ])
