from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import read_table, save_csv
    from advfit.statistics.slopes import slope_analysis

    table = pd.concat([read_table(p) for p in snakemake.input],
                      ignore_index=True)
    table = table.sort_values(["dataset", "split", "eval_set", "attack", "k"], kind="stable")
    slopes, tests = slope_analysis(table, snakemake.params.alternative)
    log.info("%d accuracy rows, %d slopes, %d tests", len(table), len(slopes), len(tests))
    save_csv(snakemake.output.accuracy, table)
    save_csv(snakemake.output.slopes, slopes)
    save_csv(snakemake.output.tests, tests)
