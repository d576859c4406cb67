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


def share_rule_settings(workflow, studies) -> None:
    """A profile's per-rule settings (set-resources, set-threads: the GPU requests
    of profiles/slurm) name the rules of one study; a study's rules are
    ``<study>_<rule>``, so each gets its rule's settings. Call it before the
    modules define their rules: Snakemake reads these settings when it creates
    a rule. (Snakemake's settings objects, as of 9.27.)"""
    resources = workflow.resource_settings
    names = {f"{study}_" for study in studies}
    by_rule = resources._parsed_overwrite_resources
    for rule, value in list(by_rule.items()):
        if any(rule.startswith(name) for name in names):
            continue  # a study's own rule named in the profile
        for study in studies:
            own = by_rule.get(f"{study}_{rule}")
            merged = value.copy()
            if own is not None:  # named for the study too: those values win
                merged.update(own)
            by_rule[f"{study}_{rule}"] = merged
    threads = resources._parsed_overwrite_threads
    for rule, value in list(threads.items()):
        for study in studies:
            threads.setdefault(f"{study}_{rule}", value)


def group_rules_per_study(workflow, studies) -> int:
    """A profile's ``groups`` (``train_model=cnn_run``: one Slurm job per split x
    regime) name the rules of one study, and Snakemake receives them only after
    reading the workflow; so each study rule looks its group up when asked, under
    its own name first, then under its rule's name, as the study's own group
    (``<study>_cnn_run``): jobs of different studies are never grouped together.
    Returns how many rules were given the lookup."""
    count = 0
    for rule in list(workflow.rules):
        for study in studies:
            if rule.name.startswith(f"{study}_") and not isinstance(rule, _StudyRule):
                rule.__class__ = _study_rule_class(type(rule))
                rule.study, rule.study_rule_name = study, rule.name[len(study) + 1:]
                count += 1
                break
    return count


class _StudyRule:
    """Mixed into a study's rules by :func:`group_rules_per_study`."""


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

    return type(f"Study{base.__name__}", (base, _StudyRule),
                {"group": property(group, base.group.fset)})
