"""Prefect tasks: thin wrappers over plain functions of the decayrec package."""
