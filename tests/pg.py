"""Fresh PostgreSQL databases for tests and benchmarks, created and dropped through the admin
URL of the server running on the machine."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import create_engine, text

from fieldsync.store.db import engine_for

PG_ADMIN_URL = os.environ.get(
    "FIELDSYNC_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def fresh_database(admin_url: str = PG_ADMIN_URL, prefix: str = "fieldsync_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    engine_for(url).dispose()
    name = url.rsplit("/", 1)[1]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
