"""Notifications: webhooks (HMAC-signed, retried, dead-lettered), Slack/Teams payloads, e-mail,
script hooks, and expiry alerts deduplicated per threshold.

Entry points: ``notify.dispatcher.build_notifier`` (a NotificationSink from [notify]),
``notify.expiry.ExpiryAlerter``, ``notify.ledger.list_dead_letters``, ``Notifier.redrive``.
"""
