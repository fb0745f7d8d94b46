"""Tooling outside the core package: the bench, the synthetic event generator and a
local PostgreSQL for tests."""
