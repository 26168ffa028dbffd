"""The shared HTTP policy, against a small stateful fake API behind httpx.MockTransport."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from connectors.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    PreconditionFailedError,
    RateLimitedError,
    TransientError,
)
from connectors.http import (
    Action,
    ConcurrencyLimit,
    PolicyClient,
    RateLimiter,
    StatusPolicy,
    json_body,
    retry_after_seconds,
)

NOW = 1_700_000_000.0
Fault = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _real_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check exact waits: undo the suite-wide shrinking of backoff."""
    monkeypatch.setenv("FIELDSYNC_HTTP_BACKOFF_SCALE", "1")


class FakeApp:
    """A tiny calendar API: accepts only its current token; serves injected faults first."""

    def __init__(self, token: str = "tok-1") -> None:
        self.valid_token = token
        self.faults: deque[Fault] = deque()
        self.always: Fault | None = None
        self.requests: list[httpx.Request] = []

    def inject(self, fault: Fault, times: int = 1) -> None:
        self.faults.extend([fault] * times)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            return self.faults.popleft()(request)
        if self.always is not None:
            return self.always(request)
        if request.headers.get("authorization") != f"Bearer {self.valid_token}":
            return httpx.Response(
                401,
                json={"error": {"code": "InvalidAuthenticationToken", "message": "expired"}},
            )
        return httpx.Response(200, json={"path": request.url.path, "n": len(self.requests)})


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
    def make(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(code, text=body, headers=headers)
        return httpx.Response(code, json=body, headers=headers)

    return make


def raises(exc_type: type[httpx.TransportError]) -> Fault:
    def make(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return make


class FakeAuth:
    """OAuth-ish: the current access token in a header; refresh moves to the next token."""

    def __init__(self, token: str = "tok-1", next_tokens: tuple[str, ...] = ()) -> None:
        self.token = token
        self.next_tokens = list(next_tokens)
        self.refresh_calls = 0
        self.client_secret = "cs-very-secret-value"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def refresh(self) -> None:
        self.refresh_calls += 1
        if not self.next_tokens:
            raise AuthError("refresh token revoked", platform="fake")
        self.token = self.next_tokens.pop(0)

    def secrets(self) -> tuple[str, ...]:
        return (self.client_secret,)


class BareAuth:
    """An auth provider without the optional secrets() method."""

    def __init__(self, token: str) -> None:
        self.token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def refresh(self) -> None:
        raise AuthError("cannot refresh")


@dataclass
class Harness:
    app: FakeApp
    auth: FakeAuth
    client: PolicyClient
    sleeps: list[float] = field(default_factory=list)


def harness(auth: FakeAuth | None = None, **kwargs: Any) -> Harness:
    app = FakeApp()
    auth = auth or FakeAuth()
    sleeps: list[float] = []
    kwargs.setdefault("rng", lambda: 0.5)
    kwargs.setdefault("now", lambda: NOW)
    http = httpx.Client(transport=httpx.MockTransport(app), base_url="https://api.example")
    client = PolicyClient("fake", http, auth, sleep=sleeps.append, **kwargs)
    return Harness(app, auth, client, sleeps)


# --- success and headers ---------------------------------------------------------------------


def test_success_is_returned_as_is_with_auth_and_caller_headers() -> None:
    h = harness()
    response = h.client.request("GET", "/calendars/a/events", headers={"X-Trace": "t1"})
    assert response.status_code == 200
    assert response.json()["path"] == "/calendars/a/events"
    sent = h.app.requests[0]
    assert sent.headers["authorization"] == "Bearer tok-1"
    assert sent.headers["x-trace"] == "t1"
    assert h.sleeps == []


def test_redirect_status_is_returned_not_raised() -> None:
    h = harness()
    h.app.inject(status(304))
    assert h.client.get("/calendars/a").status_code == 304
    assert len(h.app.requests) == 1


# --- 5xx and 429 -----------------------------------------------------------------------------


def test_503_a_few_times_then_success() -> None:
    h = harness(backoff_base=0.5)
    h.app.inject(status(503), times=3)
    assert h.client.get("/x").status_code == 200
    assert len(h.app.requests) == 4
    # rng 0.5 of the exponential ceilings 0.5, 1, 2
    assert h.sleeps == pytest.approx([0.25, 0.5, 1.0])


@pytest.mark.parametrize("code", [500, 502, 503, 504, 507, 408])
def test_server_errors_exhausted_raise_transient_not_rate_limited(code: int) -> None:
    h = harness(max_retries=3)
    h.app.always = status(code, {"error": {"message": "backend sad"}})
    with pytest.raises(TransientError) as info:
        h.client.get("/x")
    assert type(info.value) is TransientError
    assert info.value.status == code
    assert info.value.platform == "fake"
    assert "backend sad" in info.value.message
    assert len(h.app.requests) == 4
    assert len(h.sleeps) == 3


def test_429_retry_after_seconds_is_a_floor() -> None:
    h = harness()
    h.app.inject(status(429, headers={"Retry-After": "7"}))
    h.app.inject(status(429, headers={"Retry-After": "0"}))
    assert h.client.get("/x").status_code == 200
    # 7 s beats the jitter; "0" leaves the jitter (rng 0.5 * ceiling 1.0) in charge
    assert h.sleeps == pytest.approx([7.0, 0.5])


def test_429_retry_after_http_date() -> None:
    h = harness()
    when = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    h.app.inject(status(429, headers={"Retry-After": when}))
    assert h.client.get("/x").status_code == 200
    assert h.sleeps == pytest.approx([30.0])


def test_retry_after_is_capped() -> None:
    h = harness(max_retry_after=10.0)
    h.app.inject(status(503, headers={"Retry-After": "1000"}))
    assert h.client.get("/x").status_code == 200
    assert h.sleeps == [10.0]


def test_429_exhausted_raises_rate_limited_with_retry_after() -> None:
    h = harness(max_retries=3)
    h.app.always = status(429, {"error": {"message": "quota"}}, {"Retry-After": "7"})
    with pytest.raises(RateLimitedError) as info:
        h.client.post("/x", json={"a": 1})
    assert info.value.retry_after == 7.0
    assert info.value.status == 429
    assert info.value.platform == "fake"
    assert h.sleeps == [7.0, 7.0, 7.0]
    assert len(h.app.requests) == 4


def test_zero_retries_fails_on_first_429() -> None:
    h = harness(max_retries=0)
    h.app.always = status(429)
    with pytest.raises(RateLimitedError) as info:
        h.client.get("/x")
    assert info.value.retry_after is None
    assert h.sleeps == []


# --- transport errors ------------------------------------------------------------------------

TRANSPORT_ERRORS = [
    httpx.ReadTimeout,
    httpx.ConnectTimeout,
    httpx.ConnectError,
    httpx.RemoteProtocolError,
    httpx.ReadError,
]


@pytest.mark.parametrize("exc_type", TRANSPORT_ERRORS)
def test_transport_error_is_retried(exc_type: type[httpx.TransportError]) -> None:
    h = harness()
    h.app.inject(raises(exc_type), times=2)
    assert h.client.get("/x").status_code == 200
    assert len(h.sleeps) == 2


@pytest.mark.parametrize("exc_type", TRANSPORT_ERRORS)
def test_transport_error_exhausted_is_transient_chained(
    exc_type: type[httpx.TransportError],
) -> None:
    h = harness(max_retries=2)
    h.app.always = raises(exc_type)
    with pytest.raises(TransientError) as info:
        h.client.get("/x")
    assert isinstance(info.value.__cause__, exc_type)
    assert info.value.platform == "fake"
    assert len(h.app.requests) == 3


def test_non_transient_httpx_error_is_permanent_without_retry() -> None:
    h = harness()
    h.app.always = raises(httpx.UnsupportedProtocol)
    with pytest.raises(PermanentError) as info:
        h.client.get("/x")
    assert isinstance(info.value.__cause__, httpx.UnsupportedProtocol)
    assert len(h.app.requests) == 1


# --- 401 -------------------------------------------------------------------------------------


def test_401_refreshes_once_and_retries_with_new_token() -> None:
    h = harness(auth=FakeAuth("tok-1", next_tokens=("tok-2",)))
    h.app.valid_token = "tok-2"  # the server already expired tok-1
    assert h.client.get("/x").status_code == 200
    assert h.auth.refresh_calls == 1
    assert [r.headers["authorization"] for r in h.app.requests] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    assert h.sleeps == []


def test_second_401_raises_auth_error_after_one_refresh() -> None:
    h = harness(auth=FakeAuth("tok-1", next_tokens=("tok-2", "tok-3")))
    h.app.valid_token = "tok-9"
    with pytest.raises(AuthError) as info:
        h.client.get("/x")
    assert h.auth.refresh_calls == 1
    assert len(h.app.requests) == 2
    assert info.value.status == 401
    assert info.value.platform == "fake"


def test_failed_refresh_propagates_auth_error() -> None:
    h = harness(auth=FakeAuth("tok-1"))
    h.app.valid_token = "tok-2"
    with pytest.raises(AuthError, match="revoked"):
        h.client.get("/x")
    assert h.auth.refresh_calls == 1
    assert len(h.app.requests) == 1


# --- status mapping and messages -------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (404, NotFoundError),
        (410, NotFoundError),
        (409, PreconditionFailedError),
        (412, PreconditionFailedError),
        (400, PermanentError),
        (403, PermanentError),
        (422, PermanentError),
    ],
)
def test_status_maps_to_error_without_retry(code: int, error_type: type[ConnectorError]) -> None:
    h = harness()
    h.app.always = status(code, {"message": "nope"})
    with pytest.raises(ConnectorError) as info:
        h.client.delete("/calendars/a/events/e1")
    assert type(info.value) is error_type
    assert info.value.status == code
    assert info.value.platform == "fake"
    assert len(h.app.requests) == 1
    assert h.sleeps == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {
                "error": {
                    "code": 400,
                    "message": "Invalid start time.",
                    "errors": [{"reason": "invalid"}],
                    "status": "INVALID_ARGUMENT",
                }
            },
            "INVALID_ARGUMENT: Invalid start time.",
            id="google",
        ),
        pytest.param(
            {"error": {"code": "ErrorInvalidRequest", "message": "The request is invalid."}},
            "ErrorInvalidRequest: The request is invalid.",
            id="graph",
        ),
        pytest.param(
            [{"message": "No such column 'Foo__c'", "errorCode": "INVALID_FIELD"}],
            "INVALID_FIELD: No such column 'Foo__c'",
            id="salesforce",
        ),
        pytest.param({"message": "Job is archived"}, "Job is archived", id="plain"),
        pytest.param(
            {"error": "invalid_grant", "error_description": "Token has been revoked."},
            "invalid_grant: Token has been revoked.",
            id="oauth",
        ),
        pytest.param(
            {"errors": [{"message": "Field 'x' doesn't exist on type 'Job'"}]},
            "Field 'x' doesn't exist on type 'Job'",
            id="graphql",
        ),
        pytest.param("Bad   thing\nhappened", "Bad thing happened", id="text"),
    ],
)
def test_permanent_error_carries_platform_message(body: Any, expected: str) -> None:
    h = harness()
    h.app.always = status(400, body)
    with pytest.raises(PermanentError) as info:
        h.client.post("/calendars/a/events?key=abc", json={})
    assert info.value.message == f"POST /calendars/a/events: {expected}"
    assert str(info.value) == f"fake: POST /calendars/a/events: {expected} (HTTP 400)"


def test_long_text_body_is_truncated() -> None:
    h = harness()
    h.app.always = status(400, "<html>" + "x" * 5000 + "</html>")
    with pytest.raises(PermanentError) as info:
        h.client.get("/x")
    assert info.value.message.endswith("...")
    assert len(info.value.message) <= len("GET /x: ") + 300


def test_empty_body_falls_back_to_reason_phrase() -> None:
    h = harness()
    h.app.always = status(400, "")
    with pytest.raises(PermanentError) as info:
        h.client.get("/x")
    assert info.value.message == "GET /x: Bad Request"


# --- secrets ---------------------------------------------------------------------------------


def test_echoed_access_token_is_scrubbed() -> None:
    h = harness(auth=FakeAuth("tok-abcdef123456"))
    h.app.valid_token = "tok-abcdef123456"
    h.app.always = status(400, {"error": {"message": "token tok-abcdef123456 lacks scope"}})
    with pytest.raises(PermanentError) as info:
        h.client.get("/x")
    assert "tok-abcdef123456" not in str(info.value)
    assert "token *** lacks scope" in info.value.message


def test_echoed_secret_from_provider_is_scrubbed_in_retry_exhaustion() -> None:
    h = harness(max_retries=1)
    h.app.always = status(503, f"upstream rejected client cs-very-secret-value for {h.auth.token}")
    with pytest.raises(TransientError) as info:
        h.client.get("/x")
    text = str(info.value)
    assert "cs-very-secret-value" not in text
    assert h.auth.token not in text
    assert "upstream rejected client ***" in text


def test_token_scrubbed_without_secrets_method() -> None:
    app = FakeApp()
    app.always = status(400, "bad credential zz-secret-token-99")
    http = httpx.Client(transport=httpx.MockTransport(app), base_url="https://api.example")
    client = PolicyClient("fake", http, BareAuth("zz-secret-token-99"), sleep=lambda s: None)
    with pytest.raises(PermanentError) as info:
        client.get("/x")
    assert "zz-secret-token-99" not in str(info.value)


def test_retry_logs_carry_no_headers(caplog: pytest.LogCaptureFixture) -> None:
    h = harness(auth=FakeAuth("tok-logged-secret"))
    h.app.valid_token = "tok-logged-secret"
    h.app.inject(status(503))
    h.app.inject(raises(httpx.ConnectError))
    with caplog.at_level(logging.DEBUG, logger="connectors.http"):
        h.client.get("/x?api_key=qs-secret")
    assert len(caplog.records) == 2
    assert "tok-logged-secret" not in caplog.text
    assert "qs-secret" not in caplog.text


# --- jitter ----------------------------------------------------------------------------------


def test_jitter_delays_stay_within_exponential_bounds() -> None:
    base, cap, retries = 0.5, 4.0, 8
    h = harness(
        max_retries=retries, backoff_base=base, backoff_cap=cap, rng=random.Random(7).random
    )
    h.app.always = status(503)
    with pytest.raises(TransientError):
        h.client.get("/x")
    ceilings = [min(cap, base * 2**i) for i in range(retries)]
    assert len(h.sleeps) == retries
    assert all(0.0 <= d <= c for d, c in zip(h.sleeps, ceilings, strict=True))
    assert len(set(h.sleeps)) == retries  # jittered, not a fixed schedule


@pytest.mark.parametrize(("draw", "scale"), [(0.0, 0.0), (0.999999, 0.999999)])
def test_full_jitter_spans_zero_to_capped_exponential(draw: float, scale: float) -> None:
    h = harness(max_retries=6, backoff_base=0.5, backoff_cap=4.0, rng=lambda: draw)
    h.app.always = status(502)
    with pytest.raises(TransientError):
        h.client.get("/x")
    assert h.sleeps == pytest.approx([scale * c for c in [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]])


# --- overrides -------------------------------------------------------------------------------


def google_quota(response: httpx.Response) -> Action | None:
    if response.status_code != 403:
        return None
    body = json_body(response)
    errors = body.get("error", {}).get("errors", []) if isinstance(body, dict) else []
    reasons = {e.get("reason") for e in errors if isinstance(e, dict)}
    if reasons & {"rateLimitExceeded", "userRateLimitExceeded"}:
        return Action.THROTTLE
    return None


def google_403(reason: str) -> Fault:
    return status(403, {"error": {"code": 403, "message": reason, "errors": [{"reason": reason}]}})


def test_classifier_turns_google_quota_403_into_retry() -> None:
    h = harness(policy=StatusPolicy(classify=google_quota))
    h.app.inject(google_403("userRateLimitExceeded"), times=2)
    assert h.client.get("/x").status_code == 200
    assert len(h.sleeps) == 2


def test_classifier_quota_exhausted_is_rate_limited() -> None:
    h = harness(policy=StatusPolicy(classify=google_quota), max_retries=2)
    h.app.always = google_403("rateLimitExceeded")
    with pytest.raises(RateLimitedError) as info:
        h.client.get("/x")
    assert info.value.status == 403


def test_classifier_declining_falls_back_to_table() -> None:
    h = harness(policy=StatusPolicy(classify=google_quota))
    h.app.always = google_403("forbiddenForNonOrganizer")
    with pytest.raises(PermanentError, match="forbiddenForNonOrganizer"):
        h.client.get("/x")
    assert h.sleeps == []


def test_table_override_returns_status_as_is() -> None:
    h = harness(policy=StatusPolicy(overrides={404: Action.OK}))
    h.app.always = status(404)
    assert h.client.get("/x").status_code == 404


# --- Retry-After parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", 12.0),
        ("1.5", 1.5),
        ("-3", None),
        ("soon", None),
        ("nan", None),
        (format_datetime(datetime.fromtimestamp(NOW - 60, UTC), usegmt=True), 0.0),
        (format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True), 90.0),
    ],
)
def test_retry_after_parsing(value: str, expected: float | None) -> None:
    response = httpx.Response(429, headers={"Retry-After": value})
    assert retry_after_seconds(response, now=lambda: NOW) == expected


# --- rate limits -----------------------------------------------------------------------------


class FakeClock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def acquire_times(limiter: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    times = []
    for _ in range(n):
        limiter.acquire()
        times.append(clock.t)
    return times


def test_rate_limiter_spaces_calls() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, burst=1, clock=clock, sleep=clock.sleep)
    assert acquire_times(limiter, clock, 4) == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_rate_limiter_allows_burst_then_refills_only_to_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, burst=3, clock=clock, sleep=clock.sleep)
    assert acquire_times(limiter, clock, 4) == pytest.approx([0.0, 0.0, 0.0, 0.1])
    clock.t += 100.0  # a long idle spell must not bank more than the burst
    assert acquire_times(limiter, clock, 4) == pytest.approx([100.1] * 3 + [100.2])


def test_rate_limiter_reservations_are_distinct_across_threads() -> None:
    waits: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    limiter = RateLimiter(10.0, burst=1, clock=lambda: 0.0, sleep=record)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # First caller takes the token; the other 19 each reserve their own later slot.
    assert sorted(waits) == pytest.approx([0.1 * i for i in range(1, 20)])


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0.0)
    with pytest.raises(ValueError):
        RateLimiter(1.0, burst=0)


def test_client_takes_a_token_for_every_attempt() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4.0, burst=1, clock=clock, sleep=clock.sleep)
    h = harness(limiter=limiter, auth=FakeAuth("tok-1", next_tokens=("tok-2",)))
    h.app.valid_token = "tok-2"
    h.app.inject(status(503))
    h.client.get("/x")
    # 503, then 401 (old token), then 200: three attempts, three tokens
    assert len(h.app.requests) == 3
    assert clock.t == pytest.approx(0.5)


def test_concurrency_limit_per_key() -> None:
    limit = ConcurrencyLimit(2)
    active: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}
    lock = threading.Lock()

    def work(key: str) -> None:
        with limit.hold(key):
            with lock:
                active[key] += 1
                peak[key] = max(peak[key], active[key])
            time.sleep(0.01)
            with lock:
                active[key] -= 1

    threads = [threading.Thread(target=work, args=(k,)) for k in "ab" * 6]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == {"a": 2, "b": 2}


def test_concurrency_limit_keys_are_independent() -> None:
    limit = ConcurrencyLimit(1)
    other_key = threading.Event()
    same_key = threading.Event()

    def enter(key: str, entered: threading.Event) -> None:
        with limit.hold(key):
            entered.set()

    with limit.hold("mailbox-a"):
        threading.Thread(target=enter, args=("mailbox-b", other_key)).start()
        threading.Thread(target=enter, args=("mailbox-a", same_key)).start()
        assert other_key.wait(timeout=2.0)
        assert not same_key.wait(timeout=0.05)  # same key waits while we hold it
    assert same_key.wait(timeout=2.0)


def test_backoff_scale_shrinks_every_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSYNC_HTTP_BACKOFF_SCALE", "0.01")
    slept: list[float] = []
    calls = iter([httpx.Response(503), httpx.Response(200)])
    client = PolicyClient(
        "demo",
        httpx.Client(transport=httpx.MockTransport(lambda r: next(calls))),
        _NoAuth(),
        sleep=slept.append,
        rng=lambda: 1.0,
    )
    assert client.get("https://example.invalid/x").status_code == 200
    assert slept == [pytest.approx(0.005)]


class _NoAuth:
    def headers(self) -> dict[str, str]:
        return {}

    def refresh(self) -> None:
        return None
