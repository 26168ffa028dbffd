"""Fuzz the intake against its own OpenAPI: whatever schemathesis sends, valid or not, the
answer is never a 5xx."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.core import NotSet

from fieldsync.intake.app import create_app
from fieldsync.intake.sources.calendly import CalendlySource
from fieldsync.store.db import migrate
from tests.intake.conftest import seed

# Built at import: schemathesis reads the schema while pytest collects the cases. Creating
# the app touches no database; the store is a fresh file in a temporary directory.
_HOME = Path(tempfile.mkdtemp(prefix="fieldsync-fuzz-"))
_URL = f"sqlite:///{_HOME / 'store.db'}"
_APP = create_app(db_url=_URL, sources={"calendly": CalendlySource("fuzz-key")})
_KEY: list[str] = []
_CLIENT = TestClient(_APP, raise_server_exceptions=False)

schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


def _auth() -> dict[str, str]:
    if not _KEY:
        migrate(_URL)
        _KEY.append(seed(_URL)[0])
    return {"Authorization": f"Bearer {_KEY[0]}"}


@schema.parametrize()
@settings(
    max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)  # fmt: skip
def test_no_input_gets_a_server_error(case: schemathesis.Case[Any]) -> None:
    # Half the cases carry a valid API key, so validation past authentication is fuzzed too.
    headers: dict[str, str] = dict(case.headers or {})
    headers.update(_auth() if hash(repr(case.body)) % 2 == 0 else {})
    # Sent through Starlette's test client: schemathesis' own transport breaks on the
    # installed urllib3 (it iterates a pool container urllib3 no longer exposes).
    kwargs: dict[str, Any] = {"headers": headers, "params": case.query or None}
    if not isinstance(case.body, NotSet):
        if case.media_type == "application/x-www-form-urlencoded" and isinstance(case.body, dict):
            kwargs["data"] = case.body
        elif isinstance(case.body, bytes | str):
            kwargs["content"] = case.body
        else:
            kwargs["content"] = json.dumps(case.body)
            headers.setdefault("Content-Type", case.media_type or "application/json")
    response = _CLIENT.request(case.method, case.formatted_path, **kwargs)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
