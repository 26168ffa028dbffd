"""Prefect tasks: thin wrappers that call domain code and connectors."""
