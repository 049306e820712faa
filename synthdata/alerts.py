"""Alerts worth receiving: one per failure, a "resolved" message when it passes again, delivered with retries.

Three parts, none of them Dagster-specific:
- channels (`WebhookChannel`: Slack-compatible JSON POST; `EmailChannel`: SMTP) that never raise and never put
  a URL or a credential in what they return;
- the alert book over the warehouse's `alerts` table: a failure opens one alert per `dedup_key` (a repeat of an
  open failure only counts an occurrence), a pass of the same key resolves it and queues a "resolved" message;
- `deliver_due`, which sends queued messages within a time budget and reschedules failures with backoff.
"""

from __future__ import annotations

import datetime as dt
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Protocol

import duckdb


@dataclass(frozen=True)
class Alert:
    alert_id: str
    kind: str  # check_failed | run_failed | resolved
    message: str
    asset_key: str | None = None
    check_name: str | None = None
    run_id: str | None = None
    dedup_key: str | None = None  # check:<asset>:<check>[:<partition>] | run:<job>[:<partition>]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str  # short, for the alerts table and the log: never a URL or a credential


class Channel(Protocol):
    name: str

    def send(self, alert: Alert, timeout_s: float) -> Outcome: ...


def _text(alert: Alert) -> str:
    return f"[synthdata] {'RESOLVED ' if alert.kind == 'resolved' else ''}{alert.message}"


def _reason(err: BaseException) -> str:
    """An error described without its message text, which may quote the URL, host or login it failed on."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code}"
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException):
        err = err.reason
    if isinstance(err, smtplib.SMTPResponseException):
        return f"{type(err).__name__} {err.smtp_code}"
    if isinstance(err, OSError) and err.strerror:
        return f"{type(err).__name__}: {err.strerror}"
    return type(err).__name__


@dataclass(frozen=True)
class WebhookChannel:
    """POSTs JSON with a Slack-compatible `text` plus the alert's fields."""

    url: str = field(repr=False)
    name: str = "webhook"

    def send(self, alert: Alert, timeout_s: float) -> Outcome:
        try:
            parts = urllib.parse.urlsplit(self.url.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return Outcome(False, "failed: webhook URL must start with http:// or https://")
            payload = json.dumps({"text": _text(alert), **asdict(alert)}).encode()
            headers = {"Content-Type": "application/json"}
            req = urllib.request.Request(self.url.strip(), data=payload, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return Outcome(True, f"delivered: HTTP {resp.status}")
        except Exception as e:  # a delivery problem is recorded and retried, never raised into the sensor
            return Outcome(False, f"failed: {_reason(e)}")


@dataclass(frozen=True)
class EmailChannel:
    """Sends a plain-text mail through an SMTP server (STARTTLS and login when configured)."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    name: str = "email"

    def send(self, alert: Alert, timeout_s: float) -> Outcome:
        msg = EmailMessage()
        msg["Subject"] = _text(alert)[:200]
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        fields = "\n".join(f"{k}: {v}" for k, v in asdict(alert).items() if v)
        msg.set_content(f"{alert.message}\n\n{fields}\n")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg)
            return Outcome(True, f"delivered: {len(self.recipients)} recipient(s)")
        except Exception as e:
            return Outcome(False, f"failed: {_reason(e)}")


# ---------------------------------------------------------------------------------------------------------
# The alert book (the `alerts` table)
# ---------------------------------------------------------------------------------------------------------


def new_id() -> str:
    return uuid.uuid4().hex


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def record_failure(con: duckdb.DuckDBPyConnection, alert: Alert) -> bool:
    """Open an alert for a failure, or count it against the open alert of the same key. True when new."""
    open_id = con.execute(
        "SELECT alert_id FROM alerts WHERE dedup_key = ? AND kind <> 'resolved' AND resolved_at IS NULL LIMIT 1",
        [alert.dedup_key],
    ).fetchone()
    if open_id:
        con.execute("UPDATE alerts SET occurrences = occurrences + 1 WHERE alert_id = ?", [open_id[0]])
        return False
    _queue(con, alert, _now())
    return True


def _queue(con: duckdb.DuckDBPyConnection, alert: Alert, now: dt.datetime) -> None:
    """Store a new alert row, its message pending delivery from `now`."""
    con.execute(
        """INSERT INTO alerts (alert_id, created_at, kind, asset_key, check_name, run_id, message, delivered, dedup_key,
                               occurrences, attempts, next_attempt_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, 1, 0, ?)""",
        [alert.alert_id, now, alert.kind, alert.asset_key, alert.check_name, alert.run_id, alert.message,
         alert.dedup_key, now],
    )  # fmt: skip


def record_pass(con: duckdb.DuckDBPyConnection, dedup_key: str, run_id: str | None, what: str) -> Alert | None:
    """Resolve the open alert of this key (if any) and queue a "resolved" message naming the passing run."""
    row = con.execute(
        """SELECT alert_id, asset_key, check_name, occurrences FROM alerts
           WHERE dedup_key = ? AND kind <> 'resolved' AND resolved_at IS NULL""",
        [dedup_key],
    ).fetchone()
    if row is None:
        return None
    alert_id, asset_key, check_name, occurrences = row
    now = _now()
    con.execute("UPDATE alerts SET resolved_at = ? WHERE alert_id = ?", [now, alert_id])
    resolved = Alert(
        alert_id=new_id(), kind="resolved", asset_key=asset_key, check_name=check_name, run_id=run_id,
        dedup_key=dedup_key,
        message=f"{what} passes again" + (f" (run {run_id[:8]})" if run_id else "") + f" after {occurrences} failure(s)",
    )  # fmt: skip
    _queue(con, resolved, now)
    return resolved


@dataclass(frozen=True)
class RetryPolicy:
    """Delivery retries: wait base_s, then twice as long each time, up to max_attempts in all."""

    base_s: float = 30.0
    max_attempts: int = 6

    def next_delay(self, attempts: int) -> float:
        return self.base_s * 2 ** max(attempts - 1, 0)


def due(con: duckdb.DuckDBPyConnection, now: dt.datetime | None = None, limit: int = 50) -> list[tuple[Alert, set[str], int]]:
    """Queued messages whose next attempt is due: (alert, channels that took it already, attempts), oldest first."""
    rows = con.execute(
        """SELECT alert_id, kind, message, asset_key, check_name, run_id, dedup_key, delivered_channels, attempts
           FROM alerts WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ? ORDER BY created_at, alert_id LIMIT ?""",
        [now or _now(), limit],
    ).fetchall()
    return [(Alert(*r[:7]), {c for c in (r[7] or "").split(",") if c}, int(r[8] or 0)) for r in rows]


def next_due(con: duckdb.DuckDBPyConnection) -> dt.datetime | None:
    """When the next queued message is due (None: nothing queued)."""
    return con.execute("SELECT min(next_attempt_at) FROM alerts").fetchone()[0]


@dataclass
class DeliveryReport:
    sent: list[tuple[Alert, str]] = field(default_factory=list)  # (alert, outcome text), one per attempt
    deferred: int = 0  # due messages left for the next tick (the time budget ran out)


def deliver_due(
    con: duckdb.DuckDBPyConnection,
    channels: Sequence[Channel],
    budget_s: float,
    timeout_s: float = 5.0,
    policy: RetryPolicy = RetryPolicy(),
) -> DeliveryReport:
    """Send due messages through each channel that has not yet taken them, within `budget_s` in all.

    Each attempt's timeout is cut to the time left, and nothing starts with less than a second left, so the
    caller (a sensor tick) never overruns. A failed channel is retried after a backoff; after
    `policy.max_attempts` the message is given up (outcome kept, no further attempts).
    """
    deadline = time.monotonic() + budget_s
    report = DeliveryReport()
    queue = due(con)
    for i, (alert, done, attempts) in enumerate(queue):
        if not channels:
            _mark(con, alert.alert_id, "not configured", done, attempts, None)
            report.sent.append((alert, "not configured"))
            continue
        outcomes: list[tuple[str, Outcome]] = []
        for channel in channels:
            if channel.name in done:
                continue
            left = deadline - time.monotonic()
            if left < 1.0:
                report.deferred = len(queue) - i
                return report
            outcome = channel.send(alert, min(timeout_s, left))
            outcomes.append((channel.name, outcome))
            if outcome.ok:
                done = done | {channel.name}
        attempts += 1
        text = outcomes[0][1].detail if len(channels) == 1 else "; ".join(f"{n}: {o.detail}" for n, o in outcomes)
        if all(c.name in done for c in channels):
            retry_at = None
        elif attempts >= policy.max_attempts:
            retry_at, text = None, f"{text}; gave up after {attempts} attempts"
        else:
            retry_at = _now() + dt.timedelta(seconds=policy.next_delay(attempts))
        _mark(con, alert.alert_id, text, done, attempts, retry_at)
        report.sent.append((alert, text))
    return report


def _mark(
    con: duckdb.DuckDBPyConnection, alert_id: str, delivered: str, channels: set[str], attempts: int,
    retry_at: dt.datetime | None,
) -> None:  # fmt: skip
    con.execute(
        "UPDATE alerts SET delivered = ?, delivered_channels = ?, attempts = ?, next_attempt_at = ? WHERE alert_id = ?",
        [delivered, ",".join(sorted(channels)), attempts, retry_at, alert_id],
    )


def open_alerts(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(dedup_key, message) of every failure not yet resolved."""
    return con.execute(
        "SELECT dedup_key, message FROM alerts WHERE kind <> 'resolved' AND resolved_at IS NULL ORDER BY created_at"
    ).fetchall()
