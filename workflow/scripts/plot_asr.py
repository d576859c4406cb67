from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.plots import plot_asr_vs_epoch, save_figure

    table = pd.read_csv(snakemake.input.accuracy, keep_default_na=False)
    save_figure(plot_asr_vs_epoch(table), snakemake.output[0])
