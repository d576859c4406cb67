from snakemake.utils import validate

from advfit.config import ConfigError, check_config, check_schema
from advfit.data.datasets import PREPARED_LAYOUT
from advfit.runtime.plugins import CallLimit, attack_sources, model_source

# Validate before any job is scheduled, in three steps: (1) every structural
# problem at once, each naming its key (NaN and inf too); (2) the schema's
# defaults, filled by Snakemake's validate; (3) advfit's checks across keys
# and against the data, which need the defaults.
try:
    _validated = check_schema(config)
    validate(_validated, "../schemas/config.schema.yaml", set_default=True)
    _validated = check_config(_validated)
except ConfigError as error:
    # one study of many (studies.smk): say which
    study = f"study {config['study']!r}: " if config.get("study") else ""
    raise WorkflowError(study + str(error)) from None
config.clear()
config.update(_validated)

# The study this run is, when it is one of many (studies.smk sets it): its figures and
# tables get their own section of the report.
STUDY = config.get("study")


def report_section(name):
    """report()'s category: ``name``, or, for one of many studies, the study with
    ``name`` as subcategory (one section per study)."""
    return {"category": STUDY, "subcategory": name} if STUDY else {"category": name}


DATASET = config["dataset"]["name"]
MODEL = config["model"]["name"]
REGIMES = list(config["regimes"])
# splits.use runs some of the splits (e.g. one fold of 50, as Rice et al. hold out 1000
# of CIFAR-10's 50000 training images). The split files are made for all of them, by
# one job whose params leave `use` out: running more of the splits later retrains none.
ALL_SPLITS = [str(i) for i in range(config["splits"]["n_splits"])]
SPLITS = [str(i) for i in config["splits"].get("use", ALL_SPLITS)]
SPLIT_SPEC = {key: value for key, value in config["splits"].items() if key != "use"}
ATTACKS = list(config["attacks"])
# Source hashes of a custom model's builder and of plugin attacks: they are
# rule params, so editing the file reruns the jobs that use it.
MODEL_SOURCE = model_source(config)
ATTACK_SOURCES = attack_sources(config)

KNN_SPEC = config.get("knn") or {}
KNN_ATTACKS = list(KNN_SPEC.get("attacks", ATTACKS)) if KNN_SPEC else []

RUN = "results/{dataset}/{model}/{regime}/split{split}"
KNN = "results/{dataset}/knn/split{split}"
KNN_LOG = "results/logs/{dataset}/knn/split{split}"
KNN_BENCH = "results/benchmarks/{dataset}/knn/split{split}"
RUN_LOG = "results/logs/{dataset}/{model}/{regime}/split{split}"
RUN_BENCH = "results/benchmarks/{dataset}/{model}/{regime}/split{split}"
ENV = "../../envs/advfit.yaml"


wildcard_constraints:
    dataset="[a-z][a-z0-9_]*",
    model="[a-z][a-z0-9_]*",
    regime="[a-z][a-z0-9_]*",
    split=r"\d+",
    attack="[a-z][a-z0-9_]*",


def dataset_source_input():
    """A local copy given in the config is an input: replacing it reruns everything."""
    path = config["dataset"].get("path")
    return [path] if path else []


def prepare_dataset_input():
    """Every dataset but the embedded digits comes through fetch_dataset."""
    if DATASET == "digits":
        return []
    return f"results/{DATASET}/source.json"


def runs():
    """Every split x regime of this run, as wildcard dicts."""
    return [
        {"dataset": DATASET, "model": MODEL, "regime": regime, "split": split}
        for regime in REGIMES
        for split in SPLITS
    ]


def per_run(pattern):
    """``pattern`` (with RUN's wildcards) filled in for every split x regime."""
    return [pattern.format(**run) for run in runs()]


def run_keys():
    return [{**run, "split": int(run["split"])} for run in runs()]


def adversarial_sets():
    return [
        f"{RUN}/adversarial/{{attack}}.npz".format(**run, attack=attack)
        for run in runs()
        for attack in ATTACKS
    ]


def adversarial_keys():
    return [{**key, "attack": attack} for key in run_keys() for attack in ATTACKS]


# best_snapshot.metric val_robust_accuracy (Rice et al. 2020): the attack run on the
# validation sample of every evaluated snapshot; None for the clean metrics.
VALIDATION_ATTACK = (
    config["best_snapshot"].get("attack")
    if config["best_snapshot"]["metric"] == "val_robust_accuracy"
    else None
)


def best_snapshot_input():
    """select_best_snapshot's input beyond the history: its run's robust validation table
    (rule attack_validation_snapshots) with val_robust_accuracy, none otherwise."""
    return [f"{RUN}/validation_robust.csv"] if VALIDATION_ATTACK else []


def knn_cnn_run(name):
    """A file of the CNN run whose best snapshot crafts the K-NN's AEs."""
    return f"results/{{dataset}}/{MODEL}/{KNN_SPEC.get('regime')}/split{{split}}/{name}"


def figures(*names):
    """Every figure is written twice: PNG (shown in the report) and SVG."""
    return [f"results/figures/{name}.{ext}" for name in names for ext in ("png", "svg")]


def knn_outputs():
    if not KNN_SPEC:
        return []
    return [
        "results/tables/knn_accuracy.csv",
        "results/tables/knn_slopes.csv",
        "results/tables/knn_slope_tests.csv",
    ] + figures("knn_train_test_vs_k", "knn_accuracy_vs_k", "knn_slope_pvalues")


SNAPSHOT_ATTACKS = (config.get("snapshot_attacks") or {}).get("attacks", [])
TRANSFER_SPEC = config.get("transfer_matrix") or {}
TRANSFER_ATTACKS = list(TRANSFER_SPEC.get("attacks", ATTACKS)) if TRANSFER_SPEC else []


def whitebox_tables():
    """Every split x regime x white-box attack's table (none without snapshot_attacks)."""
    return [
        f"{RUN}/whitebox/{{attack}}.csv".format(**run, attack=attack)
        for run in runs()
        for attack in SNAPSHOT_ATTACKS
    ]


def whitebox_arrays():
    """The per-point arrays beside each white-box table (their meta holds the seconds)."""
    return [table.removesuffix(".csv") + ".npz" for table in whitebox_tables()]


def transfer_tables():
    return [
        f"{RUN}/transfer/{{attack}}.csv".format(**run, attack=attack)
        for run in runs()
        for attack in TRANSFER_ATTACKS
    ]


def trajectory_outputs():
    outputs = []
    if SNAPSHOT_ATTACKS:
        outputs += [
            "results/tables/whitebox.csv",
            "results/tables/whitebox_summary.csv",
            "results/tables/delta_tests_by_view.csv",
        ] + figures("transfer_vs_whitebox")
    if TRANSFER_ATTACKS:
        outputs += ["results/tables/transfer_matrix.csv"] + figures("transfer_matrix")
    return outputs


def curves_outputs():
    """Robustness curves (workflow/rules/curves.smk); none without robustness_curves."""
    if not config.get("robustness_curves"):
        return []
    return ["results/tables/whitebox_curves.csv"] + figures("whitebox_curves")


def sanity_outputs():
    """Gradient-masking flags (workflow/rules/sanity.smk); none without sanity_checks."""
    if not config.get("sanity_checks"):
        return []
    return ["results/tables/sanity_flags.csv"]


def metric_outputs():
    if not config.get("robustness_metrics"):
        return []
    return ["results/tables/robustness_metrics.csv"] + figures("robustness_metrics")


def final_outputs():
    return (
        knn_outputs()
        + metric_outputs()
        + curves_outputs()
        + sanity_outputs()
        + trajectory_outputs()
        + [
            "results/tables/accuracy.csv",
            "results/tables/accuracy_summary.csv",
            "results/tables/best_snapshots.csv",
            "results/tables/adversarial_sets.csv",
            "results/tables/distances.csv",
            "results/tables/distances_summary.csv",
            "results/tables/delta_accuracy.csv",
            "results/tables/delta_tests.csv",
            "results/tables/paired_tests.csv",
            "results/tables/accuracy_intervals.csv",
        ]
        + figures(
            "accuracy_vs_epoch", "asr_vs_epoch", "delta_accuracy", "l2_distribution"
        )
    )
