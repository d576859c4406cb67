# The rules over all studies (studies_common.smk defines the studies as modules).


wildcard_constraints:
    table="[a-z][a-z0-9_]*",


rule combine_study_tables:
    input:
        lambda w: [
            f"{study_prefix(study)}tables/{w.table}.csv"
            for study in STUDIES
            if w.table in STUDY_TABLES[study]
        ],
    output:
        "results/tables/{table}.csv",
    log:
        "results/logs/combine_study_tables/{table}.log",
    conda:
        "../../envs/advfit.yaml"
    params:
        studies=lambda w: [study for study in STUDIES if w.table in STUDY_TABLES[study]],
    script:
        "../scripts/combine_study_tables.py"


rule plot_study_comparison:
    input:
        deltas="results/tables/delta_accuracy.csv",
    output:
        png=report(
            "results/figures/study_comparison.png",
            caption="../report/study_comparison.rst",
            category="Studies compared",
        ),
        svg="results/figures/study_comparison.svg",
    log:
        "results/logs/plot_study_comparison.log",
    conda:
        "../../envs/advfit.yaml"
    script:
        "../scripts/plot_study_comparison.py"
