"""Alert ops: run by Prefect automations (a failed flow run, a conflict event) and sent
through the same alert channel blocks as conflict alerts (Slack, email, webhook)."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.core import Block
from prefect.logging import get_run_logger

from blocks.notifications import AlertChannel
from connectors.errors import scrub
from fieldsync import settings
from fieldsync.alerts import Alert


def ops_alert(title: str, detail: str, severity: str, subject: str) -> Alert:
    return Alert(
        title=title[:200],
        text=scrub(detail)[:4000],
        severity=severity if severity in ("critical", "warning") else "warning",
        technician_id=subject,
        appointment_ids=(),
        fingerprint=f"ops:{title}:{subject}"[:64],
    )


@flow(name="notify-ops", flow_run_name="notify-ops-{title}", log_prints=True)
def notify_ops(title: str, detail: str = "", severity: str = "warning", subject: str = "") -> int:
    """Send one ops alert to every channel in FIELDSYNC_OPS_ALERT_BLOCKS. Never fails: an alert
    flow that failed would itself trigger the failed-run automation, in a loop."""
    logger = get_run_logger()
    alert = ops_alert(title, detail, severity, subject)
    logger.warning("OPS ALERT %s: %s %s", alert.severity, alert.title, alert.text)
    sent = 0
    for name in settings.ops_alert_blocks():
        try:
            block = Block.load(name)
            if not isinstance(block, AlertChannel):
                raise TypeError(f"block {name!r} is not an alert channel")
            block.notifier().send(alert)
            sent += 1
        except Exception as exc:  # one broken channel must not stop the others
            logger.error("Ops alert not sent through %s: %s", name, scrub(str(exc)))
    create_markdown_artifact(
        key="ops-alert",
        markdown=f"### {alert.title}\n\n{alert.text}\n\nSent through {sent} channel(s).",
        description="Ops alert",
    )
    return sent
