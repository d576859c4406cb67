# Many studies in one run (the config's `studies` list): each study is this workflow
# again, a Snakemake module with its own config (the top-level keys, each replaced
# whole by the study's own), its files under results/studies/<study>/ and its rules
# named <study>_<rule>. Then each table is stacked over the studies with a `study`
# column (results/tables/), and one figure compares them.
from advfit.config import ConfigError
from advfit.studies import (
    adopt_profile_settings,
    study_configs,
    study_prefix,
    study_tables,
)

try:
    STUDIES = study_configs(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

known = {rule.name for rule in workflow.rules}
for study, study_config in STUDIES.items():
    rule_prefix = f"{study}_"

    module:
        name: study
        snakefile:
            "../../Snakefile"
        config:
            study_config
        replace_prefix:
            {"results/": study_prefix(study)}

    use rule * from study as rule_prefix*

    # profiles/slurm's per-rule settings (GPU requests, threads, groups) for this
    # study's rules: exactly those its module just defined
    adopt_profile_settings(
        workflow, study, [rule for rule in workflow.rules if rule.name not in known]
    )
    known |= {rule.name for rule in workflow.rules}


# Each study's final outputs, read from its own `all` rule (paths already prefixed).
STUDY_OUTPUTS = {
    study: [str(path) for path in workflow.get_rule(f"{study}_all").input]
    for study in STUDIES
}
STUDY_TABLES = {study: study_tables(STUDY_OUTPUTS[study], study) for study in STUDIES}
COMBINED_TABLES = sorted(
    {table for tables in STUDY_TABLES.values() for table in tables}
)


def studies_final_outputs():
    """Every study's own outputs, the stacked tables and the comparison figure
    (the Snakefile's `all` rule: a rule in an included file is no default target)."""
    return (
        [path for outputs in STUDY_OUTPUTS.values() for path in outputs]
        + expand("results/tables/{table}.csv", table=COMBINED_TABLES)
        + expand("results/figures/study_comparison.{ext}", ext=("png", "svg"))
    )
