"""The lake: ingest, validation and the decayed features, all in one DuckDB file."""
