"""The newsletter's own Prometheus metrics: mails sent and failed, bounces, suppression, the queue."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from distretto_shared import metrics
from newsletter import domain

SENT = Counter("distretto_newsletter_emails_sent_total", "Mails accepted by an SMTP server", ["kind"])
FAILED = Counter("distretto_newsletter_emails_failed_total", "Mails that failed for good", ["kind"])
RETRIED = Counter("distretto_newsletter_emails_retried_total", "Transient SMTP failures put back in the queue")
BOUNCED = Counter("distretto_newsletter_bounces_total", "Bounces and complaints recorded", ["kind"])
SUPPRESSED = Counter("distretto_newsletter_subscribers_suppressed_total", "Subscribers suppressed", ["reason"])
QUEUE_DEPTH = Gauge("distretto_newsletter_queue_depth", "Ledger rows waiting or being sent")
DELIVERY_RATIO = Gauge("distretto_newsletter_delivery_ratio", "Share of finished deliveries that were accepted")
SEND_RATE = Gauge("distretto_newsletter_send_rate", "Mails accepted per second over the last scheduler tick")
MAIL_KINDS = ("campaign", "confirmation", "welcome")
"""``Delivery.kind`` values (the ``kind`` label of SENT and FAILED)."""
# At zero from the first scrape, so rate() and increase() see the first failure or bounce.
metrics.zero(SENT, MAIL_KINDS)
metrics.zero(FAILED, MAIL_KINDS)
metrics.zero(BOUNCED, [k.value for k in domain.BounceKind])
metrics.zero(SUPPRESSED, [k.value for k in domain.BounceKind])
