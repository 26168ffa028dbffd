"""Persistence: SQLAlchemy tables, engine/session handling and migrations."""
