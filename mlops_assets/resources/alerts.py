"""Alerts: every alert goes to the Dagster log, and as JSON to a webhook (Slack, Teams, an
incident tool's HTTP endpoint) when MLOPS_ALERT_WEBHOOK_URL is set."""

from __future__ import annotations

import json
import urllib.request

import dagster as dg
from pydantic import Field

WEBHOOK_ENV = "MLOPS_ALERT_WEBHOOK_URL"


class AlertWebhook(dg.ConfigurableResource):
    """POSTs each alert as a JSON object; no URL means log only."""

    url: str | None = Field(default=None, description="Webhook URL (from MLOPS_ALERT_WEBHOOK_URL).")
    timeout_seconds: float = Field(default=10.0, description="Give up on a slow webhook after this.")

    def send(self, alert: dict) -> bool:
        """True when posted; raises (OSError for refused, unreachable or timed out, including
        urllib's HTTPError; RuntimeError for another non-2xx answer) when it was not delivered,
        so alert_sensor keeps it for its next tick."""
        if not self.url:
            return False
        request = urllib.request.Request(
            self.url,
            data=json.dumps(alert, default=str).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
            if response.status >= 300:
                raise RuntimeError(f"alert webhook answered HTTP {response.status}")
        return True
