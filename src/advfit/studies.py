"""Many studies in one run: the ``studies`` list of a config.

A study is a name and the top-level keys it changes (``dataset``, ``model``,
``regimes``, ``attacks``, ``splits``, ...); each key a study gives replaces the
top-level one whole (no deep merge: a study's ``regimes`` is its regimes). The
workflow runs each study as a Snakemake module of itself, its files under
``results/studies/<study>/`` and its rules named ``<study>_<rule>``
(``workflow/rules/studies.smk``); :func:`combine_tables` then stacks each
table of every study with a ``study`` column in front.

Pure Python and pandas; no model.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from advfit.config import ConfigError, load_schema

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
STUDY_PREFIX = "results/studies/{study}/"
# keys a study may not set: the list itself, and the name the workflow sets
RESERVED = ("studies", "study")


def study_configs(config: dict) -> dict[str, dict]:
    """Each study's whole config, by name, in the order given; ConfigError names
    the study and key of a bad entry (before any job runs)."""
    studies = config.get("studies")
    if not isinstance(studies, list) or not studies:
        raise ConfigError("config key 'studies': must be a non-empty list of studies, "
                          "each a mapping with a 'name'")
    allowed = set(load_schema()["properties"]) - set(RESERVED)
    base = {key: value for key, value in config.items() if key not in RESERVED}
    out: dict[str, dict] = {}
    for index, entry in enumerate(studies):
        where = f"studies[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"config key '{where}': {entry!r} is not a mapping")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"config key '{where}.name': {name!r} must match {NAME.pattern} "
                              "(it names files and rules)")
        if name in out:
            raise ConfigError(f"config key '{where}.name': study {name!r} is given twice")
        unknown = sorted(set(entry) - allowed - {"name"})
        if unknown:
            raise ConfigError(f"config key 'studies.{name}.{unknown[0]}': unknown key "
                              f"(a study sets top-level keys: {', '.join(sorted(allowed))})")
        own = {key: value for key, value in entry.items() if key != "name"}
        out[name] = copy.deepcopy({**base, **own, "study": name})
    return out


def study_prefix(study: str) -> str:
    return STUDY_PREFIX.format(study=study)


def study_tables(outputs, study: str) -> list[str]:
    """The names of the tables among a study's final outputs (``results/studies/<study>/
    tables/<name>.csv``)."""
    folder = study_prefix(study) + "tables/"
    return sorted(Path(path).stem for path in map(str, outputs)
                  if path.startswith(folder) and path.endswith(".csv"))


def combine_tables(tables: dict[str, "object"]):
    """One table from each study's (a DataFrame by study name, in study order):
    rows stacked, a ``study`` column first; columns a study lacks are empty."""
    import pandas as pd

    frames = [table.assign(study=study)[["study", *table.columns]]
              for study, table in tables.items()]
    return pd.concat(frames, ignore_index=True, sort=False)


def adopt_profile_settings(workflow, study: str, rules) -> None:
    """Give one study's rules (``<study>_<rule>``, those its module just defined)
    what a profile sets for ``<rule>``: ``set-resources`` (a value set for the
    study's rule itself wins), ``set-threads``, and ``groups`` as the study's own
    group (``train_model=cnn_run`` -> ``<study>_cnn_run``: one Slurm job per split
    x regime of a study, never shared between studies). Snakemake applies a
    profile's resources and threads by rule name when it creates a rule, and
    hands the workflow its groups only after reading it, so the groups are looked
    up when asked. Relies on Snakemake 9.27's Rule and settings objects; the
    tests (tests/test_studies.py) fail if they change."""
    settings = workflow.resource_settings
    resources, threads = settings._parsed_overwrite_resources, settings._parsed_overwrite_threads
    for rule in rules:
        base = rule.name[len(study) + 1:]
        if base in resources:
            rule.resources.update(resources[base])
            rule.resources.update(resources.get(rule.name, {}))  # the study's own wins
        if base in threads and rule.name not in threads:
            rule.resources["_cores"] = threads[base]
        rule.__class__ = _study_rule_class(type(rule))
        rule.study, rule.study_rule_name = study, base


def _study_rule_class(base: type) -> type:
    def group(self):
        if not self.workflow.non_local_exec_or_dryrun:
            return None
        groups = self.workflow.group_settings.overwrite_groups
        if self.name in groups:
            return groups[self.name]
        if self.study_rule_name in groups:
            return f"{self.study}_{groups[self.study_rule_name]}"
        return self._group

    return type(f"Study{base.__name__}", (base,), {"group": property(group, base.group.fset)})
