from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.plots import plot_l2_distribution, save_figure

    save_figure(plot_l2_distribution(pd.read_csv(snakemake.input.distances)), snakemake.output[0])
