"""Curation's table work as a Spark application.

With ``DATALOOP_TABLE_ENGINE=spark`` the ``scenario_index`` and ``training_dataset`` assets
run this file with spark-submit through Dagster Pipes: this process is the Spark driver. Its
``task`` extra says what it does, as the DuckDB path does it in the step:

- ``mine``: mine the arrival day ``day`` into the lake (``mine_day``);
- ``dataset``: build and publish the dataset of ``policy`` (``build_dataset``).

Either way it reports its master and application back to the run.
"""

from __future__ import annotations


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    from dataloop.curation import datasets as D
    from dataloop.curation.scenarios import load_scenarios, mine_day
    from dataloop.lake.layout import key_digest
    from dataloop.lake.spark import session
    from dataloop.lake.store import open_store

    with open_dagster_pipes() as pipes:
        extras = pipes.extras
        store = open_store(extras["lake"])
        context = session().sparkContext
        spark = {"spark_master": context.master, "spark_application": context.applicationId}
        pipes.log.info(f"{extras['task']} on {context.master} as {context.applicationId}")
        if extras["task"] == "mine":
            record = mine_day(store, extras["day"], load_scenarios(), "spark")
            pipes.report_asset_materialization(
                data_version=key_digest(record["clips_key"]), metadata=spark
            )
        elif extras["task"] == "dataset":
            policy = D.Policy(extras["policy"])
            record, report = D.build_dataset(store, policy, "spark", pipes.run_id)
            pipes.report_asset_materialization(
                data_version=record["version"],
                metadata={
                    **spark,
                    "seq": record["seq"],
                    "report": {"raw_value": report, "type": "json"},
                },
            )
        else:
            raise ValueError(f"task {extras['task']!r}: expected mine or dataset")


if __name__ == "__main__":
    main()
