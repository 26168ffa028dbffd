"""Who a platform's user is among our technicians."""

from __future__ import annotations

from sqlalchemy import func, select

from fieldsync.store.db import session_scope
from fieldsync.store.tables import Technician


class EmailDirectory:
    """Platform users are matched to technicians by e-mail, the one identity every platform
    shares with our roster."""

    def __init__(self, db_url: str | None) -> None:
        self.db_url = db_url

    def technician_by_email(self, email: str) -> str | None:
        with session_scope(self.db_url) as session:
            return session.scalars(
                select(Technician.id).where(
                    func.lower(Technician.email) == email.strip().lower(), Technician.active
                )
            ).first()
