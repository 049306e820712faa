import os

import dagster as dg
from pydantic import Field

from synthdata.alerts import Channel, EmailChannel, RetryPolicy, WebhookChannel

# Secrets and endpoints come from the environment through dg.EnvVar (never stored in code or run config).
ENV = {
    "webhook_url": "SYNTHDATA_ALERT_WEBHOOK",
    "smtp_host": "SYNTHDATA_SMTP_HOST",
    "smtp_port": "SYNTHDATA_SMTP_PORT",
    "smtp_username": "SYNTHDATA_SMTP_USER",
    "smtp_password": "SYNTHDATA_SMTP_PASSWORD",
    "email_from": "SYNTHDATA_ALERT_EMAIL_FROM",
    "email_to": "SYNTHDATA_ALERT_EMAIL_TO",
}


class AlertingResource(dg.ConfigurableResource):
    """Where alerts go: a Slack-compatible webhook and/or email over SMTP, each optional."""

    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    email_from: str = "synthdata@localhost"
    email_to: str | None = Field(default=None, description="Comma-separated recipients.")
    timeout_s: float = Field(default=5.0, description="Per delivery attempt, cut to what is left of the tick budget.")
    tick_budget_s: float = Field(default=20.0, description="Delivery time per sensor tick (the tick times out at 60 s).")
    retry_base_s: float = 30.0
    max_attempts: int = 6

    @classmethod
    def from_env(cls) -> "AlertingResource":
        """The resource with every setting present in the environment bound as an EnvVar."""
        kwargs: dict[str, object] = {}
        for name, var in ENV.items():
            if os.environ.get(var):
                kwargs[name] = dg.EnvVar.int(var) if name == "smtp_port" else dg.EnvVar(var)
        return cls(**kwargs)

    def channels(self) -> list[Channel]:
        channels: list[Channel] = []
        if self.webhook_url:
            channels.append(WebhookChannel(self.webhook_url))
        if self.smtp_host and self.email_to:
            recipients = tuple(r.strip() for r in self.email_to.split(",") if r.strip())
            channels.append(EmailChannel(
                self.smtp_host, self.smtp_port, self.email_from, recipients, self.smtp_username,
                self.smtp_password, self.smtp_starttls,
            ))  # fmt: skip
        return channels

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(base_s=self.retry_base_s, max_attempts=self.max_attempts)
