from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.statistics.aggregate import accuracy_intervals, collect_accuracy, summarise_accuracy
    from advfit.runtime.io import read_table, load_json, save_csv

    table = collect_accuracy([read_table(p) for p in snakemake.input.accuracy])
    log.info("%d accuracy rows", len(table))
    save_csv(snakemake.output.accuracy, table)
    confidence = snakemake.params.confidence
    save_csv(snakemake.output.summary, summarise_accuracy(table, confidence))
    save_csv(snakemake.output.intervals, accuracy_intervals(table, confidence))
    best = pd.DataFrame([{**keys, **load_json(path)}
                         for keys, path in zip(snakemake.params.runs, snakemake.input.best)])
    save_csv(snakemake.output.best, best)
