"""Prefect flows, one per trigger in the founding document."""
