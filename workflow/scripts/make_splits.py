from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import meta_to_array, save_npz
    from advfit.data.splits import make_splits

    spec = snakemake.params.splits
    data = load_prepared(snakemake.input[0])
    splits = make_splits(data, spec["method"], spec["n_splits"], snakemake.params.seed,
                         spec.get("validation_fraction", 0.2))
    for path, split in zip(snakemake.output, splits):
        log.info("%s: %s", path, {k: len(v) for k, v in split.items()})
        save_npz(path, **split, meta=meta_to_array({**spec, "seed": snakemake.params.seed}))
