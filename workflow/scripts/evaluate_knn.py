from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.data.datasets import load_prepared
    from advfit.runtime.io import load_npz, meta_to_array, save_csv, save_npz
    from advfit.knn.experiment import SplitKnn, arrays_to_predictions, evaluate_knn_split

    spec = snakemake.params.knn
    data = load_prepared(snakemake.input.data)
    split = load_npz(snakemake.input.split)
    classifier = SplitKnn.from_spec(data, split, spec, snakemake.threads)
    test_predictions = arrays_to_predictions(load_npz(snakemake.input.test_predictions))
    adversarial = {name: load_npz(path)
                   for name, path in zip(snakemake.params.attacks, snakemake.input.adversarial)}
    rows, fail_index = evaluate_knn_split(classifier, data, split, test_predictions, adversarial)
    table = pd.DataFrame(rows)
    table.insert(0, "dataset", snakemake.wildcards.dataset)
    table.insert(1, "split", int(snakemake.wildcards.split))
    save_npz(snakemake.output.fail_subset, source_index=fail_index, y=data.y[fail_index],
             meta=meta_to_array({"z": spec["z"], "n": len(fail_index)}))
    save_csv(snakemake.output.accuracy, table)
