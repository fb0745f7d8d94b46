"""Prefect flows: the pipeline as chains of named tasks."""
