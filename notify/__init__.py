"""Notifications: webhooks (HMAC-signed, retried, dead-lettered), Slack/Teams payloads, e-mail,
script hooks, and expiry alerts deduplicated per threshold."""
