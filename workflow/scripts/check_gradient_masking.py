# A model job: hand this script to the run's warm interpreter, which has
# TensorFlow imported already (advfit.jobs.warm); it continues here otherwise.
from advfit.jobs.warm import handoff

handoff()

from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import shutil
    from pathlib import Path

    from advfit import runtime
    from advfit.runtime.seeds import job_seed

    w = snakemake.wildcards
    device = runtime.configure(snakemake.threads)

    import keras
    import pandas as pd

    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import load_json, load_npz, save_csv
    from advfit.models.architectures import build_model
    from advfit.evaluation.sanity import attackable, measure_snapshot, sanity_row
    from advfit.evaluation.trajectory import (chosen_epochs, chunked, fingerprint, view_points,
                                              with_run_columns)
    from advfit.runtime.snapshot_folder import open_snapshots

    spec = snakemake.params.spec
    data = load_prepared(snakemake.input.data)
    split = load_npz(snakemake.input.split)
    best = load_json(snakemake.input.best)["best_epoch"]
    snapshots = open_snapshots(snakemake.input.snapshots)  # sealed; files checked on reading
    epochs = chosen_epochs(spec["snapshots"], list(snapshots), best)
    # The white-box view's sample of test points (same seed): flags and robust
    # accuracies of the two tables then describe the same points.
    points, points_seed = view_points(split["test"], spec["n_points"], snakemake.params.seed,
                                      w.dataset, w.split)
    x, y = data.take(points)
    model = build_model(snakemake.params.model, data.image_shape, data.n_classes)
    checked = attackable(model)  # shares model's weights: built (and traced) once

    def compute(epoch):
        # Seeded per snapshot, so a resumed job draws what an uninterrupted one did.
        seed = job_seed(snakemake.params.seed, w.dataset, w.model, w.regime, w.split,
                        "sanity", epoch)
        keras.utils.set_random_seed(seed)
        model.load_weights(snapshots[epoch])
        arrays = measure_snapshot(checked, x, y, eps=spec["eps"], norm=spec["norm"],
                                  n_queries=spec["n_queries"],
                                  batch_size=snakemake.params.batch_size)
        log.info("epoch %d: flags: %s; seconds: checks %.1f, APGD-CE %.1f, Square %.1f", epoch,
                 sanity_row(epoch, arrays)["flags"] or "none", arrays["seconds_checks"],
                 arrays["seconds_apgd"], arrays["seconds_square"])
        return arrays

    out = Path(snakemake.output.table)
    staging = out.with_name(out.stem + ".partial")
    stamp = fingerprint(spec=spec, points=points, seed=snakemake.params.seed,
                        batch_size=snakemake.params.batch_size,
                        snapshots={e: snapshots[e].stat().st_mtime_ns for e in epochs})
    chunks = chunked(staging, epochs, compute, stamp)
    table = pd.DataFrame([sanity_row(e, chunks[e]) for e in epochs])
    table = with_run_columns(table, {"dataset": w.dataset, "model": w.model, "regime": w.regime,
                                     "split": int(w.split)}, best, max(snapshots))
    table["eps"], table["norm"], table["n_queries"] = spec["eps"], spec["norm"], spec["n_queries"]
    log.info("device %s, points seed %d", device, points_seed)
    save_csv(out, table)
    shutil.rmtree(staging, ignore_errors=True)
