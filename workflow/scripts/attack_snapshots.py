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

    import time

    import keras
    import numpy as np
    import pandas as pd

    from advfit.attacks.adversarial_sets import target_labels
    from advfit.attacks import AttackSpec, craft
    from advfit.attacks.counting import CountingModel
    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import load_json, load_npz, meta_to_array, save_csv, save_npz, versions
    from advfit.models.architectures import build_model
    from advfit.evaluation.trajectory import (attack_cost, attack_snapshot, chosen_epochs,
                                              chunked, fingerprint, stack_chunks, view_points,
                                              whitebox_row,
                                              with_run_columns)
    from advfit.runtime.snapshot_folder import open_snapshots

    spec = snakemake.params.spec
    data = load_prepared(snakemake.input.data)
    split = load_npz(snakemake.input.split)
    best = load_json(snakemake.input.best)["best_epoch"]
    snapshots = open_snapshots(snakemake.input.snapshots)  # sealed; files checked on reading
    epochs = chosen_epochs(spec["snapshots"], list(snapshots), best)
    # One sample of test points per split: the same for every regime and snapshot.
    points, points_seed = view_points(split["test"], spec["n_points"], snakemake.params.seed,
                                      w.dataset, w.split)
    x, y = data.take(points)
    attack = AttackSpec.from_config(w.attack, snakemake.params.attack,
                                    timeout_s=snakemake.params.plugin_timeout.seconds)
    model = build_model(snakemake.params.model, data.image_shape, data.n_classes)
    counted = CountingModel(model)  # the attack's model: its passes are its cost

    def compute(epoch):
        # Seeded per snapshot, so a resumed job draws what an uninterrupted one did.
        seed = job_seed(snakemake.params.seed, w.dataset, w.model, w.regime, w.split, w.attack,
                        "snapshot", epoch)
        keras.utils.set_random_seed(seed)
        model.load_weights(snapshots[epoch])

        def run(xa, ya):
            y_target = target_labels(ya, data.n_classes, attack.target, seed)
            return craft(attack, counted, xa, ya, seed=seed, y_target=y_target)

        counted.reset()
        start = time.perf_counter()
        arrays = attack_snapshot(model, x, y, run, snakemake.params.batch_size,
                                 snakemake.params.l2_convention)
        passes = counted.passes
        # counts are the same on every rerun; seconds are not, and stay out of the table
        arrays.update(forward_passes=np.int64(passes.forward),
                      backward_passes=np.int64(passes.backward),
                      seconds=np.float64(time.perf_counter() - start))
        log.info("epoch %d: clean %.3f, robust %.3f; %d forward and %d backward image passes, "
                 "%.1f s", epoch, arrays["clean"].mean(), arrays["robust"].mean(),
                 passes.forward, passes.backward, arrays["seconds"])
        return arrays

    out = Path(snakemake.output.table)
    staging = out.with_name(out.stem + ".partial")
    stamp = fingerprint(method=attack.method, attack=attack.record,
                        source=snakemake.params.attack_source, points=points,
                        seed=snakemake.params.seed, l2=snakemake.params.l2_convention,
                        batch_size=snakemake.params.batch_size, cost="image passes",
                        snapshots={e: snapshots[e].stat().st_mtime_ns for e in epochs})
    chunks = chunked(staging, epochs, compute, stamp)
    table = pd.DataFrame([{**whitebox_row(e, chunks[e], snakemake.params.confidence),
                           **attack_cost(chunks[e])} for e in epochs])
    table = with_run_columns(table, {"dataset": w.dataset, "model": w.model, "regime": w.regime,
                                     "split": int(w.split), "attack": w.attack},
                             best, max(snapshots))
    table["l2_convention"] = snakemake.params.l2_convention
    meta = {"attack": w.attack, "method": attack.method, "params": attack.record,
            "function_sha256": snakemake.params.attack_source,
            "best_epoch": best, "points_seed": points_seed, "device": device,
            # wall time per snapshot (a resumed snapshot keeps its first run's)
            "seconds": {str(e): float(chunks[e]["seconds"]) for e in epochs},
            "versions": versions()}
    save_npz(snakemake.output.arrays, **stack_chunks(chunks), source_index=points, y=y,
             meta=meta_to_array(meta))
    save_csv(out, table)
    shutil.rmtree(staging, ignore_errors=True)
