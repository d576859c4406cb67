from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import load_npz
    from advfit.models.label_noise import save_training_labels
    from advfit.runtime.seeds import job_seed

    w = snakemake.wildcards
    # The training job's seed: the labels are a function of the run, not of this rule.
    seed = job_seed(snakemake.params.seed, w.dataset, w.model, w.regime, w.split)
    data = load_prepared(snakemake.input.data)
    train = load_npz(snakemake.input.split)["train"]
    record = save_training_labels(snakemake.output[0], data.y[train], train,
                                  {"label_noise": snakemake.params.label_noise},
                                  data.n_classes, seed)
    log.info("%d of %d training labels flipped (label_noise %s, seed %d)",
             record["n_flipped"], record["n"], record["fraction"], record["seed"])
