from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import save_json
    from advfit.statistics.selection import best_epoch
    from advfit.runtime.layout import snapshot_name

    metric = snakemake.params.metric
    history = pd.read_csv(snakemake.input.history)
    epoch = best_epoch(history, metric)
    value = float(history.loc[history.epoch == epoch, metric].iloc[0])
    log.info("best snapshot: epoch %d (%s = %.4f)", epoch, metric, value)
    save_json(snakemake.output[0], {"best_epoch": epoch, "metric": metric, "value": value,
                                    "snapshot": snapshot_name(epoch)})
