"""What a conflict alert says, independent of the channel that carries it."""

from __future__ import annotations

from dataclasses import dataclass

from fieldsync.conflicts import ConflictFinding

_ICON = {"critical": ":rotating_light:", "warning": ":warning:"}


@dataclass(frozen=True)
class Alert:
    title: str
    text: str  # plain text, for email and logs
    severity: str
    technician_id: str
    appointment_ids: tuple[str, ...]
    fingerprint: str
    options: tuple[str, ...] = ()  # rescheduling options, best first, one line each

    def slack_blocks(self) -> list[dict[str, object]]:
        lines = [f"{_ICON.get(self.severity, '')} *{self.title}*", self.text]
        if self.options:
            lines.append(
                "*Options:*\n" + "\n".join(f"{i}. {o}" for i, o in enumerate(self.options, 1))
            )
        return [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]

    def payload(self) -> dict[str, object]:
        """The JSON a generic webhook (a Zapier catch hook, say) receives."""
        return {
            "event": "fieldsync.conflict.detected",
            "title": self.title,
            "text": self.text,
            "severity": self.severity,
            "technician_id": self.technician_id,
            "appointment_ids": list(self.appointment_ids),
            "fingerprint": self.fingerprint,
            "options": list(self.options),
        }


def conflict_alert(finding: ConflictFinding, options: tuple[str, ...] = ()) -> Alert:
    kind = {"overlap": "Double-booking", "travel": "Not enough travel time"}.get(
        finding.kind, finding.kind.capitalize()
    )
    return Alert(
        title=f"{kind} for technician {finding.technician_id}",
        text=finding.detail,
        severity=finding.severity,
        technician_id=finding.technician_id,
        appointment_ids=finding.appointment_ids,
        fingerprint=finding.fingerprint,
        options=options,
    )


def conflict_table(findings: list[ConflictFinding]) -> list[dict[str, str]]:
    """The conflicts table artifact, one row a finding; one empty row when there are none, so
    ops always find the table in the UI."""
    return [
        {
            "technician": f.technician_id,
            "kind": f.kind,
            "severity": f.severity,
            "appointments": ", ".join(f.appointment_ids),
            "detail": f.detail,
        }
        for f in findings
    ] or [{"technician": "", "kind": "none", "severity": "", "appointments": "", "detail": ""}]
