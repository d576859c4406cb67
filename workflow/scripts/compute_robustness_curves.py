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

    from advfit.attacks import AttackSpec, craft
    from advfit.attacks.adversarial_sets import target_labels
    from advfit.data.datasets import load_prepared
    from advfit.evaluation.curves import check_columns, curve_rows, minimal_norms
    from advfit.evaluation.trajectory import (attack_snapshot, chosen_epochs, chunked,
                                              fingerprint, view_points, with_run_columns)
    from advfit.models.architectures import build_model
    from advfit.runtime.io import load_json, load_npz, meta_to_array, save_csv, save_npz, versions
    from advfit.runtime.snapshot_folder import open_snapshots

    spec = snakemake.params.spec
    seed = snakemake.params.seed
    batch_size = snakemake.params.batch_size
    data = load_prepared(snakemake.input.data)
    split = load_npz(snakemake.input.split)
    best = load_json(snakemake.input.best)["best_epoch"]
    snapshots = open_snapshots(snakemake.input.snapshots)  # sealed; files checked on reading
    epochs = chosen_epochs(spec["snapshots"], list(snapshots), best)
    # The white-box view's sample of test points, so the curves and its rows share points.
    points, points_seed = view_points(split["test"], spec["n_points"], seed, w.dataset, w.split)
    x, y = data.take(points)
    check_name = spec.get("check_attack")
    check = (AttackSpec.from_config(check_name, snakemake.params.check,
                                    timeout_s=snakemake.params.plugin_timeout.seconds)
             if check_name else None)
    check_eps = check.params.get("eps") if check else None
    model = build_model(snakemake.params.model, data.image_shape, data.n_classes)

    def run_check(epoch):
        # Seeded as attack_snapshots seeds this attack and snapshot: the same AEs, so the
        # check equals the white-box row of this attack where the view runs it.
        check_seed = job_seed(seed, w.dataset, w.model, w.regime, w.split, check_name,
                              "snapshot", epoch)
        keras.utils.set_random_seed(check_seed)

        def run(xa, ya):
            y_target = target_labels(ya, data.n_classes, check.target, check_seed)
            return craft(check, model, xa, ya, seed=check_seed, y_target=y_target)

        return attack_snapshot(model, x, y, run, batch_size, "channels")["robust"]

    def compute(epoch):
        # Seeded per snapshot, so a resumed job draws what an uninterrupted one did.
        keras.utils.set_random_seed(job_seed(seed, w.dataset, w.model, w.regime, w.split,
                                             "robustness_curves", epoch))
        model.load_weights(snapshots[epoch])
        norms = minimal_norms(model, x, y, spec["attack"], spec["norm"], spec["params"],
                              batch_size)
        arrays = {"norms": norms}
        if check:
            arrays["check_robust"] = run_check(epoch)
        log.info("epoch %d: clean %.3f, median minimal norm %.4g%s", epoch,
                 (norms > 0).mean(), np.median(norms),
                 f", {check_name} robust {arrays['check_robust'].mean():.3f} at {check_eps}"
                 if check else "")
        return arrays

    out = Path(snakemake.output.table)
    staging = out.with_name(out.stem + ".partial")
    stamp = fingerprint(attack=spec["attack"], norm=spec["norm"], params=spec["params"],
                        check=check.record if check else None, check_name=check_name,
                        source=snakemake.params.check_source, points=points, seed=seed,
                        batch_size=batch_size,
                        snapshots={e: snapshots[e].stat().st_mtime_ns for e in epochs})
    chunks = chunked(staging, epochs, compute, stamp)
    rows = []
    for epoch in epochs:
        norms = chunks[epoch]["norms"]
        checked = check_columns(norms, chunks[epoch].get("check_robust"), check_name, check_eps)
        for row in curve_rows(norms, spec["eps_grid"], snakemake.params.confidence):
            rows.append({"epoch": epoch, "attack": spec["attack"], "norm": str(spec["norm"]),
                         **row, **checked})
    table = with_run_columns(pd.DataFrame(rows), {"dataset": w.dataset, "model": w.model,
                                                  "regime": w.regime, "split": int(w.split)},
                             best, max(snapshots))
    meta = {"attack": spec["attack"], "norm": str(spec["norm"]), "params": spec["params"],
            "check_attack": check_name, "check": check.record if check else None,
            "function_sha256": snakemake.params.check_source, "best_epoch": best,
            "points_seed": points_seed, "device": device, "versions": versions()}
    arrays = {"epoch": np.array(epochs, np.int64),
              "norms": np.stack([chunks[e]["norms"] for e in epochs]),
              "eps_grid": np.array(spec["eps_grid"], np.float64)}
    if check:
        arrays["check_robust"] = np.stack([chunks[e]["check_robust"] for e in epochs])
    save_npz(snakemake.output.arrays, **arrays, source_index=points, y=y,
             meta=meta_to_array(meta))
    save_csv(out, table)
    shutil.rmtree(staging, ignore_errors=True)
