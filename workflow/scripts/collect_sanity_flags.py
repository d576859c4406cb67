from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import read_table, save_csv

    keys = ["dataset", "model", "regime", "split", "epoch"]
    table = pd.concat([read_table(p) for p in snakemake.input], ignore_index=True)
    table = table.sort_values(keys).reset_index(drop=True)
    # read_table reads an all-empty text column as NaN: no flag is the empty string
    table["flags"] = table["flags"].fillna("")
    flagged = table[table["any_flag"].astype(str) == "True"]
    log.info("%d snapshots checked, %d with a gradient-masking flag", len(table), len(flagged))
    for row in flagged.itertuples():
        log.warning("%s split %s epoch %s: %s", row.regime, row.split, row.epoch, row.flags)
    save_csv(snakemake.output.table, table)
