# A model job: hand this script to the run's warm interpreter, which has
# TensorFlow imported already (advfit.jobs.warm); it continues here otherwise.
from advfit.jobs.warm import handoff

handoff()

from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit import runtime
    from advfit.runtime.seeds import job_seed

    w = snakemake.wildcards
    seed = job_seed(snakemake.params.seed, w.dataset, w.model, w.regime, w.split, w.attack)
    device = runtime.configure(snakemake.threads, seed=seed)

    from advfit.attacks.adversarial_sets import craft_adversarial_set
    from advfit.attacks import AttackSpec
    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import load_json, load_npz, meta_to_array, save_npz, versions
    from advfit.runtime.snapshot_folder import open_snapshots
    from advfit.models.architectures import build_model

    data = load_prepared(snakemake.input.data)
    test_index = load_npz(snakemake.input.split)["test"]
    best = load_json(snakemake.input.best)
    model = build_model(snakemake.params.model, data.image_shape, data.n_classes)
    # The sealed folder (manifest) and the best snapshot's checksum, checked on reading.
    model.load_weights(open_snapshots(snakemake.input.snapshots)[best["best_epoch"]])
    attack = AttackSpec.from_config(w.attack, snakemake.params.attack,
                                    timeout_s=snakemake.params.plugin_timeout.seconds)
    x_test, y_test = data.take(test_index)
    # The same test samples for every attack of this split x regime.
    source_seed = job_seed(snakemake.params.seed, w.dataset, w.model, w.regime, w.split, "sources")
    arrays = craft_adversarial_set(model, x_test, y_test, test_index, attack,
                                   snakemake.params.subset_size, seed, source_seed=source_seed,
                                   batch_size=snakemake.params.batch_size,
                                   min_margin=snakemake.params.min_margin)
    meta = {"attack": w.attack, "method": attack.method, "params": attack.record,
            "best_epoch": best["best_epoch"], "subset_size": snakemake.params.subset_size,
            "min_margin": snakemake.params.min_margin,
            "evaluation_batch_size": snakemake.params.batch_size,
            "seed": seed, "source_seed": source_seed, "device": device, "versions": versions()}
    if snakemake.params.attack_source:
        meta["function_sha256"] = snakemake.params.attack_source
    save_npz(snakemake.output[0], **arrays, best_epoch=best["best_epoch"],
             meta=meta_to_array(meta))
