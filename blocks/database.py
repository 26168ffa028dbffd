from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr


class FieldsyncDatabase(Block):
    """Where the fieldsync store lives: a SQLAlchemy URL for SQLite or PostgreSQL. The URL is
    secret because a PostgreSQL URL carries its password."""

    _block_type_name = "fieldsync database"
    _block_type_slug = "fieldsync-database"
    _documentation_url = HttpUrl("https://github.com/fieldsync/fieldsync#configuration")
    _code_example = """
```python
from blocks.database import FieldsyncDatabase

fieldsync_database = FieldsyncDatabase.load("BLOCK_NAME")
url = fieldsync_database.url.get_secret_value()
```
"""

    url: SecretStr = Field(
        description=(
            "SQLAlchemy URL, e.g. sqlite:///var/fieldsync.db or "
            "postgresql+psycopg://user:password@host:5432/fieldsync."
        ),
    )
