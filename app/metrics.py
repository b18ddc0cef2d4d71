"""The service's Prometheus metrics (`prometheus-client`), defined once here and counted where
things happen; served at `/metrics` (app/web/metrics.py) to the addresses allowed.

Under `feikong serve --processes N` every process counts into files in
`PROMETHEUS_MULTIPROC_DIR` (set by the supervisor before it forks, under the var dir) and
`/metrics` adds them up, whichever process answers; the worker, on the same machine with the
same directory, is added up with them. Without that variable (one process), the counters live
in memory.

What is computed from the database at each scrape (meters online/offline, the jobs' last runs)
is in `app/web/metrics.py`, not here: it needs no counting."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

NOTIFICATIONS = Counter("feikong_notifications_total",
                        "Payment notifications received, by provider and outcome "
                        "(accepted, refused, error)", ["provider", "outcome"])
CREDITS = Counter("feikong_credits_total", "Top-ups credited to the ledger", ["provider"])
COMMANDS = Counter("feikong_commands_total",
                   "Commands ended, by action (cut, restore, read) and outcome (done, expired)",
                   ["action", "outcome"])
ATTEMPTS = Counter("feikong_command_attempts_total",
                   "Command attempts, by action and outcome (confirmed, mismatch, timeout, …)",
                   ["action", "outcome"])
RESTORE_SECONDS = Histogram(
    "feikong_restore_seconds",
    "From a restore queued (a payment's own transaction, or a manager) to its read-back "
    "confirmation: payment to power",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
READINGS = Counter("feikong_readings_stored_total", "Meter readings judged and stored")
POLL_ROUND_SECONDS = Histogram("feikong_poll_round_seconds", "One gateway's poll round",
                               ["gateway"], buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
HTTP_SECONDS = Histogram("feikong_http_request_seconds", "Server time of a request, by route",
                         ["route", "method", "status"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
MESSAGES = Counter("feikong_messages_total",
                   "Messages to residents, by channel (wechat_template, wechat_subscribe, sms) "
                   "and outcome (queued, sent, failed, skipped)", ["channel", "outcome"])
MESSAGE_ATTEMPTS = Counter("feikong_message_attempts_total",
                           "Message delivery attempts, by channel and result (ok, transient, "
                           "permanent)", ["channel", "result"])
MESSAGE_SECONDS = Histogram(
    "feikong_message_delivery_seconds",
    "From a notice to the provider taking its message, by timing (at_once: the cut notice and "
    "confirmations; reminder: held for the messaging hours)", ["timing"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 6 * 3600, 12 * 3600, 86400))
