from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import load_npz, read_table, save_csv
    from advfit.statistics.paired import check_against_accuracy, combine_splits, split_rows

    accuracy = read_table(snakemake.input.accuracy)
    spec = snakemake.params.statistics
    pairs = [tuple(p) for p in spec["paired_epochs"]]
    per_split, compared = [], 0
    for keys, path in zip(snakemake.params.runs, snakemake.input.correctness):
        correctness = load_npz(path)
        run = accuracy[(accuracy.regime == keys["regime"])
                       & (accuracy.split == int(keys["split"]))]
        # The paired tests must rest on the very counts of accuracy.csv.
        compared += check_against_accuracy(correctness, run)
        rows = split_rows(correctness, pairs, spec["alternative"], spec["confidence"])
        per_split.append(pd.DataFrame(rows).assign(**{**keys, "split": str(keys["split"])}))
    per_split = pd.concat(per_split, ignore_index=True)
    log.info("%d per-example counts agree with accuracy.csv", compared)
    combined = combine_splits(per_split, spec["alternative"], spec["confidence"])
    table = pd.concat([per_split, combined], ignore_index=True)
    first = ["dataset", "model", "regime", "eval_set", "attack", "pair", "split"]
    table = table[first + [c for c in table.columns if c not in first]]
    save_csv(snakemake.output.tests, table)
