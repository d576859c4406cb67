from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import read_table, save_csv

    table = pd.concat([read_table(p) for p in snakemake.input], ignore_index=True)
    table = table.sort_values(["dataset", "model", "regime", "split", "epoch", "eps"],
                              kind="stable")
    log.info("%d curve rows from %d runs", len(table), len(snakemake.input))
    save_csv(snakemake.output[0], table)
