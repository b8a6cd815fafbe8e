"""JSON views of ACME resources (RFC 8555 §7.1.2 to §7.1.5), and loading them with fresh status."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from acme_server.context import AcmeContext
from acme_server.errors import AcmeError
from acme_server.states import authz_status, order_status
from storage.models import Authorization, Challenge, Order
from storage.repositories import acme as repo


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def challenge_json(context: AcmeContext, challenge: Challenge) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": challenge.type,
        "url": context.urls.challenge(challenge.id),
        "status": challenge.status,
        "token": challenge.token,
    }
    if challenge.validated_at is not None:
        body["validated"] = rfc3339(challenge.validated_at)
    if challenge.error is not None:
        body["error"] = challenge.error
    if challenge.validation_records:
        body["validationRecord"] = challenge.validation_records
    return body


def authz_json(
    context: AcmeContext, authz: Authorization, challenges: list[Challenge], now: dt.datetime
) -> dict[str, Any]:
    status = authz_status(authz.status, authz.expires_at, now)
    shown = challenges
    if status == "valid":
        # RFC 8555 §7.1.4: a valid authorization lists the challenge that was completed.
        shown = [c for c in challenges if c.status == "valid"] or challenges
    body: dict[str, Any] = {
        "identifier": {"type": authz.identifier_type, "value": authz.identifier_value},
        "status": status,
        "expires": rfc3339(authz.expires_at),
        "challenges": [challenge_json(context, c) for c in shown],
    }
    if authz.wildcard:
        body["wildcard"] = True
    return body


def order_json(context: AcmeContext, order: Order, authz_ids: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": order.status,
        "expires": rfc3339(order.expires_at),
        "identifiers": order.identifiers,
        "authorizations": [context.urls.authz(a) for a in authz_ids],
        "finalize": context.urls.finalize(order.id),
    }
    if order.not_before is not None:
        body["notBefore"] = rfc3339(order.not_before)
    if order.not_after is not None:
        body["notAfter"] = rfc3339(order.not_after)
    if order.error is not None:
        body["error"] = order.error
    if order.profile is not None:
        body["profile"] = order.profile
    if order.replaces is not None:
        body["replaces"] = order.replaces
    if order.certificate_id is not None:
        body["certificate"] = context.urls.certificate(order.certificate_id)
    return body


async def load_order(
    session: AsyncSession, context: AcmeContext, order_id: str, account_id: str
) -> tuple[Order, list[Authorization]]:
    """Load an order of this account and bring its status up to date (persisted)."""
    order = await session.get(Order, order_id)
    if order is None or order.account_id != account_id:
        # Another account's order is "not found" too: no existence oracle.
        raise AcmeError("malformed", "no such order", status=404)
    authzs = await repo.order_authorizations(session, order.id)
    now = context.clock()
    fresh = order_status(
        order.status,
        order.expires_at,
        [authz_status(a.status, a.expires_at, now) for a in authzs],
        now,
    )
    if fresh != order.status:
        extra: dict[str, Any] = {}
        if fresh == "invalid" and order.error is None:
            extra["error"] = {
                "type": "urn:ietf:params:acme:error:unauthorized",
                "detail": "an authorization of the order failed or expired",
                "status": 403,
            }
        if await repo.set_order_status(
            session, order.id, [order.status], fresh, now, expected_updated_at=None, **extra
        ):
            order.status = fresh
            if "error" in extra:
                order.error = extra["error"]
        else:
            await session.refresh(order)
    return order, authzs
