
import dagster as dg

from synthdata.alerts import Alert, post_webhook


class AlertingResource(dg.ConfigurableResource):
    """Delivers alerts to a webhook (Slack-compatible JSON). Set the URL through EnvVar, never in code."""

    webhook_url: str | None = None
    timeout_s: float = 10.0

    def deliver(self, alert: Alert) -> str:
        if not self.webhook_url:
            return "not configured"
        return post_webhook(self.webhook_url, alert, self.timeout_s)
