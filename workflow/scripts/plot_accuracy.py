from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import read_table

    from advfit.report.plots import plot_accuracy_vs_epoch, save_figure

    table = read_table(snakemake.input.accuracy)
    best = pd.read_csv(snakemake.input.best)
    save_figure(plot_accuracy_vs_epoch(table, best, snakemake.params.confidence),
                snakemake.output.png, snakemake.output.svg)
