from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit.data.datasets import fetch_source_record
    from advfit.runtime.io import save_json

    record = fetch_source_record(snakemake.params.spec, snakemake.params.cache)
    log.info("verified: %s", record)
    save_json(snakemake.output[0], record)
