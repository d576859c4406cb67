# A model job: hand this script to the run's warm interpreter, which has
# TensorFlow imported already (advfit.jobs.warm); it continues here otherwise.
from advfit.jobs.warm import handoff

handoff()

from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from pathlib import Path

    from advfit import runtime
    from advfit.runtime.seeds import job_seed

    w = snakemake.wildcards
    # One sample of test points per dataset: the same points for every split
    # sharing a test set, every regime and every snapshot.
    seed = job_seed(snakemake.params.seed, w.dataset, "robustness_metrics")
    device = runtime.configure(snakemake.threads, seed=seed)

    import pandas as pd

    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import load_npz, save_csv
    from advfit.runtime.snapshot_folder import open_snapshots
    from advfit.models.architectures import build_model
    from advfit.evaluation.snapshot_metrics import metric_sample, metrics_by_epoch

    spec = snakemake.params.spec
    data = load_prepared(snakemake.input.data)
    split = load_npz(snakemake.input.split)
    points = metric_sample(split["test"], spec["n_points"], seed)
    x, y = data.take(points)
    snapshot_dir = Path(snakemake.input.snapshots)
    model = build_model(snakemake.params.model, data.image_shape, data.n_classes)
    rows = metrics_by_epoch(model, open_snapshots(snapshot_dir), x, y,
                            spec["metrics"], seed, spec.get("clever_repeats", 1),
                            snakemake.params.confidence)
    table = pd.DataFrame(rows)
    for i, (key, value) in enumerate([("dataset", w.dataset), ("model", w.model),
                                      ("regime", w.regime), ("split", int(w.split))]):
        table.insert(i, key, value)
    save_csv(snakemake.output[0], table)
