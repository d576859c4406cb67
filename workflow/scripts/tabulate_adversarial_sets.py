from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.statistics.aggregate import summarise_distances
    from advfit.data.datasets import load_prepared
    from advfit.evaluation.distances import perturbation_norms
    from advfit.runtime.io import array_to_meta, load_npz, save_csv

    data = load_prepared(snakemake.input.data)
    convention = snakemake.params.l2_convention
    sets, per_ae = [], []
    for keys, path in zip(snakemake.params.sets, snakemake.input.adversarial):
        adv = load_npz(path)
        meta = array_to_meta(adv["meta"])
        sets.append({**keys, "method": meta["method"], "best_epoch": int(adv["best_epoch"]),
                     "n_tried": int(adv["n_tried"]), "n_success": int(adv["n_success"]),
                     "success_rate": int(adv["n_success"]) / max(int(adv["n_tried"]), 1),
                     "params": str(meta["params"])})
        norms = perturbation_norms(adv["x"], data.images(adv["source_index"]), convention)
        per_ae.append(pd.DataFrame({**keys, "source_index": adv["source_index"], **norms,
                                    "l2_convention": convention}))
    per_ae = pd.concat(per_ae, ignore_index=True)
    log.info("%d adversarial examples in %d sets", len(per_ae), len(sets))
    save_csv(snakemake.output.sets, pd.DataFrame(sets))
    save_csv(snakemake.output.distances, per_ae)
    spec = snakemake.params.statistics
    save_csv(snakemake.output.summary,
             summarise_distances(per_ae, spec["confidence"], snakemake.params.seed,
                                 spec["bootstrap_resamples"]))
