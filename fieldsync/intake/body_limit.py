"""Refuse request bodies over the limit before any handler parses them."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """Pure ASGI middleware: a declared Content-Length over the limit is refused at once; a
    body without one is buffered up to the limit and refused as soon as it passes it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _refuse(
                    send,
                    400,
                    f"Content-Length {declared.decode(errors='replace')!r} is not a number",
                )
                return
            if size > self.limit:
                await _refuse(send, 413, self._too_big(size))
                return
        chunks: list[bytes] = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.limit:
                await _refuse(send, 413, self._too_big(None))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_big(self, size: int | None) -> str:
        got = f"{size} bytes" if size is not None else "more than that"
        return f"the body is too large: at most {self.limit} bytes (1 MiB) are accepted, got {got}"


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "errors": []}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
