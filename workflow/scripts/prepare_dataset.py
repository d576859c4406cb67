from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit.data.datasets import PREPARED_LAYOUT, prepared_arrays, read_dataset
    from advfit.runtime.io import load_json, meta_to_array, save_npz, versions

    spec = snakemake.params.spec
    source = load_json(snakemake.input.source) if snakemake.input.source else {}
    arrays = read_dataset(spec, source.get("folder"))
    log.info("%s: %d train, %d test images of shape %s", spec["name"], len(arrays["y_train"]),
             len(arrays["y_test"]), arrays["x_train"].shape[1:])
    stored = prepared_arrays(arrays)  # consumes arrays (frees the float32 images)
    log.info("images stored as %s (scale %g)", stored["x_train"].dtype, stored["x_scale"])
    meta = {"dataset": spec, "source": source, "layout": PREPARED_LAYOUT, "versions": versions()}
    save_npz(snakemake.output[0], **stored, meta=meta_to_array(meta))
