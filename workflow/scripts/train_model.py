# A model job: hand this script to the run's warm interpreter, which has
# TensorFlow imported already (advfit.jobs.warm); it continues here otherwise.
from advfit.jobs.warm import handoff

handoff()

from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from pathlib import Path

    from advfit import runtime
    from advfit.runtime.seeds import job_seed
    from advfit.runtime.snapshot_folder import exclusive, publish

    w = snakemake.wildcards
    seed = job_seed(snakemake.params.seed, w.dataset, w.model, w.regime, w.split)
    device = runtime.configure(snakemake.threads, seed=seed)

    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import file_sha256, load_npz, save_csv, save_json, versions
    from advfit.models.label_noise import load_training_labels
    from advfit.models.architectures import build_model
    from advfit.models.training import train_regime

    data = load_prepared(snakemake.input.data)
    split = load_npz(snakemake.input.split)
    train = data.take(split["train"])
    # The labels to train on (with the regime's label_noise, a seeded fraction
    # flipped), made once by rule make_training_labels; evaluation reads them too.
    train_labels, _ = load_training_labels(snakemake.input.train_labels, split["train"], train[1])
    model = build_model(snakemake.params.model, data.image_shape, data.n_classes)
    # Snapshots go to a staging folder renamed into place at the end: the
    # declared folder exists only once every epoch is written. Snakemake does
    # not know the staging folder, so a killed job leaves it behind, with a
    # training state after each epoch: the rerun continues from the last
    # complete epoch, bit-identically (a changed regime or seed starts afresh).
    # The folder is sealed with a manifest (every epoch's SHA-256) that every
    # consumer checks. One job at a time writes it: a second snakemake run
    # started on the same results (e.g. after --unlock under a live one) fails
    # here instead of interleaving its epochs with the first's.
    final = Path(snakemake.output.snapshots)
    staging = final.with_name(final.name + ".partial")
    with exclusive(final.with_name(".snapshots.lock"), f"snapshot folder {final}"):
        # With adversarial_training, it trains on PGD AEs crafted batch by batch.
        history = train_regime(model, snakemake.params.regime, train,
                               data.take(split["validation"]), data.take(split["test"]),
                               staging, seed=seed, train_labels=train_labels, resume=True)
        publish(staging, final, int(snakemake.params.regime["epochs"]), seed=seed)
    save_json(snakemake.output.meta, {
        "dataset": w.dataset, "model": w.model, "regime": w.regime, "split": w.split,
        "regime_spec": snakemake.params.regime, "seed": seed,
        "train_labels_sha256": file_sha256(snakemake.input.train_labels),
        # The resolved PGD adversarial-training spec (defaults filled); null without.
        "adversarial_training": history.attrs["adversarial_training"],
        "device": device, "versions": versions(),
        **({"model_spec": snakemake.params.model,
            "builder_sha256": snakemake.params.model_source}
           if snakemake.params.model_source else {}),
    })
    save_csv(snakemake.output.history, history)
