"""fieldsync domain package: models, store, ledger, scheduling and ICS rendering (no Prefect)."""

__version__ = "0.1.0"
