"""Direct Kafka access for partners: a SCRAM user per partner, READ on its granted public topics only
(blocking admin calls, run in a thread by the use cases of :mod:`partners.service`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from distretto_shared.contracts import public as pub
from distretto_shared.kafka_security import (
    KafkaAccess,
    KafkaAccessError,
    new_password,
    partner_acls,
    partner_user,
    principal_of,
)
from distretto_shared.topics import topic_name
from distretto_shared.web import DomainError
from partners.config import Settings
from partners.models import KafkaAccessOut


class KafkaUnavailable(DomainError):
    """The broker refused or did not answer a change of a partner's Kafka user or ACLs."""

    status = 503
    code = "kafka_unavailable"


def public_topics(event_types: Sequence[str]) -> list[str]:
    """The physical public topics carrying ``event_types``."""
    by_type = {cls.event_type: cls.topic for cls in pub.PUBLIC_TYPES}
    return sorted({topic_name(by_type[t]) for t in event_types if t in by_type})


def _access(s: Settings) -> KafkaAccess:
    return KafkaAccess(s.kafka_bootstrap_servers, s.kafka_credentials(), timeout=s.kafka_admin_timeout_seconds)


def grant_sync(settings: Settings, partner_id: str, event_types: Sequence[str], fresh: bool) -> KafkaAccessOut:
    user = partner_user(partner_id)
    topics = public_topics(event_types)
    password = new_password()
    access = _access(settings)
    try:
        access.set_user(user, password)
        access.converge(principal_of(user), partner_acls(partner_id, topics))
    except KafkaAccessError as exc:
        if fresh:  # nothing half-created: a new user without its ACLs (or the reverse) is taken back
            with contextlib.suppress(Exception):
                access.revoke_all(principal_of(user))
            with contextlib.suppress(Exception):
                access.delete_user(user)
        raise KafkaUnavailable(
            f"Kafka did not take the partner's access ({exc}); nothing was changed, try again when the broker is back"
        ) from None
    return KafkaAccessOut(
        username=user,
        password=password,
        bootstrap_servers=settings.kafka_partner_bootstrap or settings.kafka_bootstrap_servers,
        topics=topics,
        group_prefix=f"{user}.",
    )


def converge_sync(settings: Settings, partner_id: str, event_types: Sequence[str]) -> None:
    try:
        _access(settings).converge(
            principal_of(partner_user(partner_id)), partner_acls(partner_id, public_topics(event_types))
        )
    except KafkaAccessError as exc:
        raise KafkaUnavailable(f"Kafka did not take the partner's new grant ({exc}); nothing was changed") from None


def revoke_sync(settings: Settings, partner_id: str) -> None:
    user = partner_user(partner_id)
    access = _access(settings)
    try:
        access.revoke_all(principal_of(user))
        access.delete_user(user)
    except KafkaAccessError as exc:
        raise KafkaUnavailable(
            f"Kafka did not remove the partner's access ({exc}); it is unchanged, try again when the broker is back"
        ) from None
