from snakemake.utils import min_version

min_version("9.0")


# The advfit package of this workflow; config files read strictly (duplicate keys, YAML errors).
include: "workflow/rules/setup.smk"


# A --configfile on the command line replaces the default run instead of being
# merged into it (a merge would keep the default's attacks and regimes).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# A `studies` list runs this workflow once per study, as modules (studies.smk);
# without it, one study: the rules below.
if config.get("studies"):

    include: "workflow/rules/studies_common.smk"
    include: "workflow/rules/studies.smk"

    rule all:
        default_target: True
        input:
            studies_final_outputs(),

else:

    include: "workflow/rules/common.smk"
    include: "workflow/rules/data.smk"
    include: "workflow/rules/training.smk"
    include: "workflow/rules/attacks.smk"
    include: "workflow/rules/evaluation.smk"
    include: "workflow/rules/aggregation.smk"
    include: "workflow/rules/knn.smk"
    include: "workflow/rules/metrics.smk"
    include: "workflow/rules/trajectory.smk"
    include: "workflow/rules/curves.smk"
    include: "workflow/rules/sanity.smk"

    rule all:
        default_target: True
        input:
            final_outputs(),


# Model jobs run in a warm interpreter (src/advfit/jobs/warm.py); let it go at the end.
onsuccess:
    from advfit.jobs.usage import finish_workflow

    finish_workflow()


onerror:
    from advfit.jobs.usage import finish_workflow

    finish_workflow()
