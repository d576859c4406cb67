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
    import numpy as np
    import pandas as pd

    from advfit.attacks.adversarial_sets import craft_adversarial_set
    from advfit.attacks import AttackSpec
    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import load_json, load_npz, meta_to_array, save_csv, save_npz, versions
    from advfit.models.architectures import build_model
    from advfit.evaluation.trajectory import chosen_epochs, chunked, evaluate_sets, fingerprint
    from advfit.runtime.snapshot_folder import open_snapshots

    spec = snakemake.params.spec
    data = load_prepared(snakemake.input.data)
    test_index = load_npz(snakemake.input.split)["test"]
    best = load_json(snakemake.input.best)["best_epoch"]
    snapshots = open_snapshots(snakemake.input.snapshots)  # sealed; files checked on reading
    craft_epochs = chosen_epochs(spec["craft_epochs"], list(snapshots), best)
    craft_epochs = sorted(set(craft_epochs) | {min(snapshots)})
    attack = AttackSpec.from_config(w.attack, snakemake.params.attack,
                                    timeout_s=snakemake.params.plugin_timeout.seconds)
    x_test, y_test = data.take(test_index)
    model = build_model(snakemake.params.model, data.image_shape, data.n_classes)
    # The same draw of sources as the adversarial set crafted at M.
    source_seed = job_seed(snakemake.params.seed, w.dataset, w.model, w.regime, w.split, "sources")
    at_best = load_npz(snakemake.input.adversarial)  # the row at M: the adversarial set itself

    def craft(epoch):
        if epoch == best:
            return {k: at_best[k] for k in ("x", "y", "source_index", "n_tried", "n_success")}
        seed = job_seed(snakemake.params.seed, w.dataset, w.model, w.regime, w.split, w.attack,
                        "craft", epoch)
        keras.utils.set_random_seed(seed)
        model.load_weights(snapshots[epoch])
        arrays = craft_adversarial_set(model, x_test, y_test, test_index, attack,
                                       snakemake.params.subset_size, seed,
                                       batch_size=snakemake.params.batch_size,
                                       source_seed=source_seed,
                                       min_margin=snakemake.params.min_margin)
        return {k: arrays[k] for k in ("x", "y", "source_index", "n_tried", "n_success")}

    out = Path(snakemake.output.table)
    staging = out.with_name(out.stem + ".partial")
    stamp = fingerprint(method=attack.method, attack=attack.record,
                        source=snakemake.params.attack_source, seed=snakemake.params.seed,
                        subset=snakemake.params.subset_size, margin=snakemake.params.min_margin,
                        batch_size=snakemake.params.batch_size,
                        snapshots={e: snapshots[e].stat().st_mtime_ns for e in craft_epochs})
    sets = chunked(staging, craft_epochs, craft, stamp, name="craft_epoch")
    rows = evaluate_sets(model, snapshots, sets, snakemake.params.batch_size)
    table = pd.DataFrame(rows)
    for i, (key, value) in enumerate([("dataset", w.dataset), ("model", w.model),
                                      ("regime", w.regime), ("split", int(w.split)),
                                      ("attack", w.attack)]):
        table.insert(i, key, value)
    last = max(snapshots)
    table["craft_is_best"] = table["craft_epoch"] == best
    table["craft_is_last"] = table["craft_epoch"] == last
    table["eval_is_best"] = table["eval_epoch"] == best
    table["eval_is_last"] = table["eval_epoch"] == last
    for e in craft_epochs:
        log.info("crafted at epoch %d: %d of %d AEs kept", e, int(sets[e]["n_success"]),
                 int(sets[e]["n_tried"]))
    meta = {"attack": w.attack, "method": attack.method, "params": attack.record,
            "function_sha256": snakemake.params.attack_source, "best_epoch": best,
            "craft_epochs": craft_epochs, "source_seed": source_seed, "device": device,
            "versions": versions()}
    order = sorted(sets)
    save_npz(snakemake.output.arrays,
             craft_epoch=np.concatenate([np.full(len(sets[e]["y"]), e, np.int64) for e in order]),
             source_index=np.concatenate([sets[e]["source_index"] for e in order]),
             y=np.concatenate([sets[e]["y"] for e in order]),
             n_tried=np.array([int(sets[e]["n_tried"]) for e in order]),
             meta=meta_to_array(meta))
    save_csv(out, table)
    shutil.rmtree(staging, ignore_errors=True)
