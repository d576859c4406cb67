from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit.datasets import load_dataset
    from advfit.io import meta_to_array, save_npz, versions

    name = snakemake.wildcards.dataset
    arrays = load_dataset(name)
    log.info("%s: %d train, %d test images of shape %s", name, len(arrays["y_train"]),
             len(arrays["y_test"]), arrays["x_train"].shape[1:])
    meta = {"dataset": name, "versions": versions()}
    save_npz(snakemake.output[0], **arrays, meta=meta_to_array(meta))
