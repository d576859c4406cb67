from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import read_table, save_csv
    from advfit.report.plots import save_figure
    from advfit.report.view_plots import plot_transfer_matrix
    from advfit.statistics.views import summarise_transfer

    keys = ["dataset", "model", "regime", "split", "attack", "craft_epoch", "eval_epoch"]
    table = pd.concat([read_table(p) for p in snakemake.input], ignore_index=True)
    table = table.sort_values(keys).reset_index(drop=True)
    log.info("%d transfer-matrix rows", len(table))
    save_csv(snakemake.output.table, table)
    save_figure(plot_transfer_matrix(summarise_transfer(table)), snakemake.output.figure,
                snakemake.output.figure_svg)
