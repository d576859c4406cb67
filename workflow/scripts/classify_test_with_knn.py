from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import load_npz, meta_to_array, save_npz, versions
    from advfit.knn.experiment import SplitKnn, predictions_to_arrays

    spec = snakemake.params.knn
    data = load_prepared(snakemake.input.data)
    split = load_npz(snakemake.input.split)
    classifier = SplitKnn.from_spec(data, split, spec, snakemake.threads)
    predictions = classifier.predict(data.images(split["test"]))
    log.info("%d test samples classified by the K-NN, K = %s", len(split["test"]), classifier.ks)
    save_npz(snakemake.output[0], **predictions_to_arrays(predictions),
             meta=meta_to_array({**spec, "versions": versions()}))
