# A model job: hand this script to the run's warm interpreter, which has
# TensorFlow imported already (advfit.jobs.warm); it continues here otherwise.
from advfit.jobs.warm import handoff

handoff()

from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit import runtime
    from advfit.runtime.seeds import job_seed

    w = snakemake.wildcards
    seed = job_seed(snakemake.params.seed, w.dataset, "knn", w.split, w.attack)
    device = runtime.configure(snakemake.threads, seed=seed)

    from advfit.attacks import AttackSpec
    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import load_json, load_npz, meta_to_array, save_npz, versions
    from advfit.runtime.snapshot_folder import open_snapshots
    from advfit.knn.experiment import SplitKnn, arrays_to_predictions, craft_knn_adversarial_set
    from advfit.models.architectures import build_model

    spec = snakemake.params.knn
    data = load_prepared(snakemake.input.data)
    split = load_npz(snakemake.input.split)
    test_predictions = arrays_to_predictions(load_npz(snakemake.input.test_predictions))
    best = load_json(snakemake.input.best)
    model = build_model(snakemake.params.model, data.image_shape, data.n_classes)
    # The sealed folder (manifest) and the best snapshot's checksum, checked on reading.
    model.load_weights(open_snapshots(snakemake.input.snapshots)[best["best_epoch"]])
    classifier = SplitKnn.from_spec(data, split, spec)
    attack = AttackSpec.from_config(w.attack, snakemake.params.attack,
                                    timeout_s=snakemake.params.plugin_timeout.seconds)
    x_test, y_test = data.take(split["test"])
    arrays = craft_knn_adversarial_set(model, classifier, x_test, y_test, split["test"],
                                       test_predictions[spec["z"]], attack,
                                       snakemake.params.subset_size, seed,
                                       source_seed=job_seed(snakemake.params.seed, w.dataset,
                                                            "knn", w.split, "sources"))
    meta = {"attack": w.attack, "method": attack.method, "params": attack.record,
            "cnn_regime": spec["regime"], "cnn_best_epoch": best["best_epoch"], "z": spec["z"],
            "seed": seed,
            "device": device, "versions": versions()}
    if snakemake.params.attack_source:
        meta["function_sha256"] = snakemake.params.attack_source
    save_npz(snakemake.output[0], **arrays, meta=meta_to_array(meta))
