from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import read_table, save_json
    from advfit.statistics.robust_selection import ROBUST_METRIC, best_robust_epoch, robust_record
    from advfit.statistics.selection import best_epoch
    from advfit.runtime.layout import snapshot_name

    metric = snakemake.params.metric
    history = pd.read_csv(snakemake.input.history)
    if metric == ROBUST_METRIC:
        # M on the robust accuracy of the validation sample (attack_validation_snapshots),
        # among the evaluated epochs; the clean choice recorded beside it.
        table = read_table(snakemake.input.robust[0])
        epoch = best_robust_epoch(table)
        extra = robust_record(table, epoch)
        value = extra["validation_robust_accuracy"]
        # The whole validation part's clean accuracy at M, and the clean metric's choice.
        extra["val_accuracy"] = float(history.loc[history.epoch == epoch, "val_accuracy"].iloc[0])
        extra["val_accuracy_best_epoch"] = best_epoch(history, "val_accuracy")
        log.info("best snapshot: epoch %d (%s = %.4f, %s on %d validation points, %d epochs "
                 "evaluated); val_accuracy would choose epoch %d", epoch, metric, value,
                 extra["validation_attack"], extra["validation_n_points"],
                 extra["validation_epochs_evaluated"], extra["val_accuracy_best_epoch"])
    else:
        epoch = best_epoch(history, metric)
        value = float(history.loc[history.epoch == epoch, metric].iloc[0])
        extra = {}
        log.info("best snapshot: epoch %d (%s = %.4f)", epoch, metric, value)
    save_json(snakemake.output[0], {"best_epoch": epoch, "metric": metric, "value": value,
                                    "snapshot": snapshot_name(epoch), **extra})
