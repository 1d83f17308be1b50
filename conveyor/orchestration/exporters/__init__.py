"""Pipelines handed to other orchestrators: an Airflow DAG file, a Kubeflow Pipelines spec.

Each exported task runs one step in its own process, ``conveyor run FILE --only STEP`` (the
step seam): the orchestrator schedules, conveyor resolves, caches and records as it does
locally. The workers must reach the pipeline file, the artifact root and the metadata store.
"""
