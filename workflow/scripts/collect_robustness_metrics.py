from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import save_csv
    from advfit.report.plots import plot_robustness_metrics, save_figure

    table = pd.concat([pd.read_csv(p) for p in snakemake.input], ignore_index=True)
    table = table.sort_values(["dataset", "model", "regime", "split", "epoch", "metric"])
    save_csv(snakemake.output.table, table)
    save_figure(plot_robustness_metrics(table), snakemake.output.figure,
                snakemake.output.figure_svg)
