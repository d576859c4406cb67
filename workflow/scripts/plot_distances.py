from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.report.plots import plot_l2_distribution, save_figure

    figure = plot_l2_distribution(pd.read_csv(snakemake.input.distances))
    save_figure(figure, snakemake.output.png, snakemake.output.svg)
