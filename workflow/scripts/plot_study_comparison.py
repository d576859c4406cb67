from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit.runtime.io import read_table

    from advfit.report.plots import plot_study_comparison, save_figure

    deltas = read_table(snakemake.input.deltas)
    save_figure(plot_study_comparison(deltas), snakemake.output.png, snakemake.output.svg)
