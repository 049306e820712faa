"""Alert delivery: a JSON POST to a webhook (Slack-compatible `text` field included)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Alert:
    alert_id: str
    kind: str  # check_failed | run_failed
    message: str
    asset_key: str | None = None
    check_name: str | None = None
    run_id: str | None = None


def post_webhook(url: str, alert: Alert, timeout_s: float = 10.0) -> str:
    """POST the alert; return a short delivery status for the alerts table (never raises)."""
    payload = {"text": f"[synthdata] {alert.message}", **asdict(alert)}
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return f"delivered: HTTP {resp.status}"
    except urllib.error.HTTPError as e:
        return f"failed: HTTP {e.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        return f"failed: {getattr(e, 'reason', e)}"
