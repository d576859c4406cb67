# A model job: hand this script to the run's warm interpreter, which has
# TensorFlow imported already (advfit.warm); it continues here otherwise.
from advfit.warm import handoff

handoff()

from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from pathlib import Path

    from advfit import runtime
    from advfit.seeds import job_seed

    w = snakemake.wildcards
    seed = job_seed(snakemake.params.seed, w.dataset, w.model, w.regime, w.split, w.attack)
    device = runtime.configure(snakemake.threads, seed=seed)

    from advfit.adversarial import craft_adversarial_set
    from advfit.datasets import load_prepared
    from advfit.io import load_json, load_npz, meta_to_array, save_npz, versions
    from advfit.models import build_model

    data = load_prepared(snakemake.input.data)
    test_index = load_npz(snakemake.input.split)["test"]
    best = load_json(snakemake.input.best)
    model = build_model(w.model, data.image_shape, data.n_classes)
    model.load_weights(Path(snakemake.input.snapshots) / best["snapshot"])
    spec = dict(snakemake.params.attack)
    method = spec.pop("method")
    x_test, y_test = data.take(test_index)
    # The same test samples for every attack of this split x regime.
    source_seed = job_seed(snakemake.params.seed, w.dataset, w.model, w.regime, w.split, "sources")
    arrays = craft_adversarial_set(model, x_test, y_test, test_index, method, spec,
                                   snakemake.params.subset_size, seed, source_seed=source_seed)
    meta = {"attack": w.attack, "method": method, "params": spec,
            "best_epoch": best["best_epoch"], "subset_size": snakemake.params.subset_size,
            "seed": seed, "source_seed": source_seed, "device": device, "versions": versions()}
    save_npz(snakemake.output[0], **arrays, best_epoch=best["best_epoch"],
             meta=meta_to_array(meta))
