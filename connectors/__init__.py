"""Connectors: one module per platform behind the contract in `connectors.base`. Never Prefect."""
