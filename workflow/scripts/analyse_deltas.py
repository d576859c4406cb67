from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.statistics.aggregate import delta_table, delta_tests
    from advfit.runtime.io import read_table, save_csv

    table = read_table(snakemake.input.accuracy)
    best = pd.read_csv(snakemake.input.best)
    deltas = delta_table(table, best)
    tests = delta_tests(deltas, snakemake.params.confidence, snakemake.params.alternative)
    log.info("%d deltas, %d tests", len(deltas), len(tests))
    save_csv(snakemake.output.deltas, deltas)
    save_csv(snakemake.output.tests, tests)
