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
    p = snakemake.params
    device = runtime.configure(snakemake.threads)

    import keras
    import pandas as pd

    from advfit.attacks import AttackSpec, craft
    from advfit.attacks.adversarial_sets import target_labels
    from advfit.data.datasets import load_prepared
    from advfit.evaluation.trajectory import attack_snapshot, chunked, fingerprint
    from advfit.models.architectures import build_model
    from advfit.runtime.io import load_npz, save_csv
    from advfit.runtime.snapshot_folder import open_snapshots
    from advfit.statistics.robust_selection import (RUN_KEYS, evaluated_epochs,
                                                    validation_points, validation_row)

    data = load_prepared(snakemake.input.data)
    split = load_npz(snakemake.input.split)
    snapshots = open_snapshots(snakemake.input.snapshots)  # sealed; files checked on reading
    epochs = evaluated_epochs(list(snapshots), p.every)
    # The split's validation part only, never test points; one sample per split,
    # the same for every regime and epoch.
    points, points_seed = validation_points(split["validation"], p.n_points, p.seed,
                                            w.dataset, w.split)
    x, y = data.take(points)
    attack = AttackSpec.from_config(p.attack_name, p.attack,
                                    timeout_s=snakemake.params.plugin_timeout.seconds)
    model = build_model(p.model, data.image_shape, data.n_classes)
    log.info("best snapshot by %s robust accuracy on %s: epochs %s of %d, %d validation "
             "points", p.attack_name, device, epochs, max(snapshots), len(points))

    def compute(epoch):
        # Seeded per snapshot, so a resumed job draws what an uninterrupted one did.
        seed = job_seed(p.seed, w.dataset, w.model, w.regime, w.split, p.attack_name,
                        "validation", epoch)
        keras.utils.set_random_seed(seed)
        model.load_weights(snapshots[epoch])

        def run(xa, ya):
            y_target = target_labels(ya, data.n_classes, attack.target, seed)
            return craft(attack, model, xa, ya, seed=seed, y_target=y_target)

        arrays = attack_snapshot(model, x, y, run, p.batch_size, p.l2_convention)
        log.info("epoch %d: clean %.3f, robust %.3f", epoch, arrays["clean"].mean(),
                 arrays["robust"].mean())
        return {"clean": arrays["clean"], "robust": arrays["robust"]}

    out = Path(snakemake.output[0])
    staging = out.with_name(out.stem + ".partial")
    stamp = fingerprint(method=attack.method, attack=attack.record, source=p.attack_source,
                        points=points, seed=p.seed, batch_size=p.batch_size,
                        snapshots={e: snapshots[e].stat().st_mtime_ns for e in epochs})
    chunks = chunked(staging, epochs, compute, stamp)
    rows = [validation_row(e, chunks[e]["clean"], chunks[e]["robust"], p.confidence)
            for e in epochs]
    table = pd.DataFrame(rows)
    keys = {"dataset": w.dataset, "model": w.model, "regime": w.regime, "split": int(w.split)}
    for i, key in enumerate(RUN_KEYS):
        table.insert(i, key, keys[key])
    table.insert(len(RUN_KEYS), "attack", p.attack_name)
    table["every"] = int(p.every)
    table["points_seed"] = points_seed
    save_csv(out, table)
    shutil.rmtree(staging, ignore_errors=True)
