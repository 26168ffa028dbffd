"""Intake credentials. A token is shown once, when issued; the store keeps its SHA-256 only,
so a copy of the database does not hand out working tokens."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fieldsync.store.tables import AccessToken, Technician, utcnow

Purpose = Literal["api", "status", "feed"]
PURPOSES: tuple[Purpose, ...] = ("api", "status", "feed")


class TokenError(ValueError):
    pass


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(session: Session, purpose: Purpose, subject: str) -> str:
    """A new token for `subject`: an API client's name, or a technician id for status and
    feed tokens (which must name a known technician)."""
    if purpose not in PURPOSES:
        raise TokenError(f"unknown token purpose {purpose!r} (one of: {', '.join(PURPOSES)})")
    if not subject.strip():
        raise TokenError("a token needs a subject: the API client's name or a technician id")
    if purpose != "api" and session.get(Technician, subject) is None:
        raise TokenError(f"no technician {subject!r}: status and feed tokens name a technician")
    token = f"fs{purpose[0]}_" + secrets.token_urlsafe(32)
    session.add(AccessToken(token_hash=digest(token), purpose=purpose, subject=subject))
    return token


def subject_of(session: Session, purpose: Purpose, token: str | None) -> str | None:
    """Whom a presented token belongs to, or None: unknown, revoked or for another purpose."""
    if not token:
        return None
    row = session.get(AccessToken, digest(token))
    if row is None or row.purpose != purpose or row.revoked_at is not None:
        return None
    return row.subject


def revoke(session: Session, purpose: Purpose, subject: str) -> int:
    result = session.execute(
        update(AccessToken)
        .where(AccessToken.purpose == purpose, AccessToken.subject == subject)
        .where(AccessToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def subjects(session: Session, purpose: Purpose) -> list[str]:
    stmt = select(AccessToken.subject).where(
        AccessToken.purpose == purpose, AccessToken.revoked_at.is_(None)
    )
    return sorted(set(session.scalars(stmt)))
