"""Events published by the newsletter service (no email addresses on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from distretto_shared.events import Event
from distretto_shared.topics import TopicSpec, register

SUBSCRIBER_TOPIC = TopicSpec("newsletter.subscriber.v1", partitions=3)
CAMPAIGN_TOPIC = TopicSpec("newsletter.campaign.v1", partitions=3)
SEGMENT_TOPIC = TopicSpec("newsletter.segment.v1", partitions=1)
register(SUBSCRIBER_TOPIC, CAMPAIGN_TOPIC, SEGMENT_TOPIC)


class _SubscriberEvent(Event):
    topic = SUBSCRIBER_TOPIC.name
    subject_field = "subscriber_id"

    subscriber_id: str


class SubscriberConfirmed(_SubscriberEvent):
    """A subscriber confirmed the double opt-in."""

    event_type = "distretto.newsletter.subscriber.confirmed.v1"
    lists: list[str] = []
    interests: list[str] = []


class SubscriberUnsubscribed(_SubscriberEvent):
    """A subscriber left one or more lists (or all of them)."""

    event_type = "distretto.newsletter.subscriber.unsubscribed.v1"
    lists: list[str] = []
    method: str = "link"
    """link, one-click, preferences, bounce, complaint, admin"""


class SubscriberErased(_SubscriberEvent):
    """A subscriber's data was erased."""

    event_type = "distretto.newsletter.subscriber.erased.v1"


class BounceRecorded(_SubscriberEvent):
    """A bounce or complaint was recorded."""

    event_type = "distretto.newsletter.bounce.recorded.v1"
    kind: str
    """hard, soft, complaint"""
    suppressed: bool


class _CampaignEvent(Event):
    topic = CAMPAIGN_TOPIC.name
    subject_field = "campaign_id"

    campaign_id: str


class CampaignStarted(_CampaignEvent):
    """A campaign started; its audience is frozen."""

    event_type = "distretto.newsletter.campaign.started.v1"
    name: str
    recipients: int


class CampaignPublished(_CampaignEvent):
    """A campaign with a public web version started: its subject (rendered without any subscriber's
    fields) and the link. Nothing about recipients."""

    event_type = "distretto.newsletter.campaign.published.v1"
    subject_line: str
    web_url: str
    published_at: datetime | None = None


class CampaignFinished(_CampaignEvent):
    """A campaign finished (or was cancelled)."""

    event_type = "distretto.newsletter.campaign.finished.v1"
    status: str
    sent: int
    failed: int


class DeliveryFailed(_CampaignEvent):
    """One delivery failed for good."""

    event_type = "distretto.newsletter.delivery.failed.v1"
    subscriber_id: str
    smtp_code: int | None = None
    reason: str = ""


class _SegmentEvent(Event):
    topic = SEGMENT_TOPIC.name
    subject_field = "segment_id"

    segment_id: str


class SegmentCreated(_SegmentEvent):
    """A segment (a saved rule over audience attributes, lists and interests) was defined."""

    event_type = "distretto.newsletter.segment.created.v1"
    name: str
    rule: dict[str, Any]
    digest: bool = False
    digest_sections: list[str] = []
    """The digest sections the segment's digest keeps (empty: all)."""
    welcome: bool = False
    """Welcome mails go to new members' contacts in this segment."""


class SegmentChanged(_SegmentEvent):
    """A segment's name, rule or automation changed, or it was deleted; carries the whole new state."""

    event_type = "distretto.newsletter.segment.changed.v1"
    name: str
    rule: dict[str, Any]
    digest: bool = False
    digest_sections: list[str] = []
    """The digest sections the segment's digest keeps (empty: all)."""
    welcome: bool = False
    """Welcome mails go to new members' contacts in this segment."""
    deleted: bool = False
