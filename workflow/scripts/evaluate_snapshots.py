# A model job: hand this script to the run's warm interpreter, which has
# TensorFlow imported already (advfit.jobs.warm); it continues here otherwise.
from advfit.jobs.warm import handoff

handoff()

from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit import runtime

    device = runtime.configure(snakemake.threads)

    import pandas as pd

    from advfit.data.datasets import load_prepared
    from advfit.evaluation.snapshots import check_zero_at_best, evaluate_split
    from advfit.runtime.io import load_json, load_npz, meta_to_array, save_csv, save_npz
    from advfit.models.label_noise import load_training_labels

    w = snakemake.wildcards
    data = load_prepared(snakemake.input.data)
    split = load_npz(snakemake.input.split)
    best = load_json(snakemake.input.best)
    adversarial = {name: load_npz(path)
                   for name, path in zip(snakemake.params.attacks, snakemake.input.adversarial)}
    # The train set is scored against the labels the model was trained on
    # (with the regime's label_noise: rule make_training_labels' file).
    train_labels, _ = load_training_labels(snakemake.input.train_labels, split["train"],
                                           data.y[split["train"]])
    rows, fail_index, correctness = evaluate_split(
        snakemake.params.model, data, split, snakemake.input.snapshots, best["best_epoch"],
        adversarial, batch_size=snakemake.params.batch_size, train_labels=train_labels,
        nonzero_at_best=snakemake.params.nonzero_at_best, return_correctness=True)
    table = pd.DataFrame(rows)
    for i, (key, value) in enumerate([("dataset", w.dataset), ("model", w.model),
                                      ("regime", w.regime), ("split", w.split)]):
        table.insert(i, key, value)
    save_npz(snakemake.output.fail_subset, source_index=fail_index,
             y=data.y[fail_index], best_epoch=best["best_epoch"],
             meta=meta_to_array({"best_epoch": best["best_epoch"], "n": len(fail_index),
                                 "nonzero_at_best": check_zero_at_best(rows, best["best_epoch"])}))
    # Per-example correctness (epochs x samples per evaluation set) for the
    # paired McNemar tests; written before the table that marks the job done.
    save_npz(snakemake.output.correctness, **correctness, best_epoch=best["best_epoch"],
             meta=meta_to_array({"dataset": w.dataset, "model": w.model, "regime": w.regime,
                                 "split": int(w.split)}))
    save_csv(snakemake.output.accuracy, table)
