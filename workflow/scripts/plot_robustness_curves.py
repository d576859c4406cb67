from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit.report.curve_plots import plot_robustness_curves
    from advfit.report.plots import save_figure
    from advfit.runtime.io import read_table

    table = read_table(snakemake.input[0])
    log.info("%d curve rows", len(table))
    save_figure(plot_robustness_curves(table, snakemake.params.confidence),
                snakemake.output.figure, snakemake.output.figure_svg)
