"""Scoring: a fitted model's top-K lists for every user, on one process or sharded."""
