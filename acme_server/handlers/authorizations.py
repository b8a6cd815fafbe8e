"""Authorizations and challenges (RFC 8555 §7.5): read, deactivate, respond."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from acme_server.context import AcmeContext, ctx
from acme_server.errors import AcmeError, malformed
from acme_server.messages import AuthzUpdatePayload, parse_payload
from acme_server.pipeline import verify_post
from acme_server.states import authz_status
from acme_server.views import authz_json, challenge_json
from storage.models import Authorization, Challenge, ValidationJob
from storage.repositories import acme as repo


async def _own_authz(session: AsyncSession, authz_id: str, account_id: str) -> Authorization:
    authz = await session.get(Authorization, authz_id)
    if authz is None or authz.account_id != account_id:
        raise AcmeError("malformed", "no such authorization", status=404)
    return authz


async def _authz_response(
    session: AsyncSession, context: AcmeContext, authz: Authorization
) -> web.Response:
    challenges = await repo.authz_challenges(session, authz.id)
    response = web.json_response(authz_json(context, authz, challenges, context.clock()))
    response.headers["Location"] = context.urls.authz(authz.id)
    return response


async def authorization(request: web.Request) -> web.Response:
    context = ctx(request)
    verified = await verify_post(request)
    account = verified.require_account()
    async with context.sessions.begin() as session:
        authz = await _own_authz(session, request.match_info["id"], account.id)
        if not verified.jws.is_post_as_get:
            payload = parse_payload(AuthzUpdatePayload, verified.payload())
            # RFC 8555 §7.5.2: a client may only deactivate, and only a pending or valid authz.
            if payload.status != "deactivated":
                raise malformed(
                    "the only authorization status a client may request is 'deactivated'"
                )
            current = authz_status(authz.status, authz.expires_at, context.clock())
            if current not in ("pending", "valid"):
                raise malformed(f"authorization is {current} and cannot be deactivated")
            await session.execute(
                update(Authorization)
                .where(Authorization.id == authz.id)
                .values(status="deactivated")
            )
            authz.status = "deactivated"
        return await _authz_response(session, context, authz)


async def challenge(request: web.Request) -> web.Response:
    """POST {} starts validation (§7.5.1); POST-as-GET reads the challenge."""
    context = ctx(request)
    verified = await verify_post(request)
    account = verified.require_account()
    queued = False
    async with context.sessions.begin() as session:
        chall = await session.get(Challenge, request.match_info["id"])
        if chall is None:
            raise AcmeError("malformed", "no such challenge", status=404)
        authz = await _own_authz(session, chall.authorization_id, account.id)
        if not verified.jws.is_post_as_get:
            verified.payload()  # must be a JSON object ({} per §7.5.1); other members ignored
            status = authz_status(authz.status, authz.expires_at, context.clock())
            if chall.status == "pending":
                if status != "pending":
                    raise malformed(f"authorization is {status}; its challenges cannot be answered")
                moved = await session.execute(
                    update(Challenge)
                    .where(Challenge.id == chall.id, Challenge.status == "pending")
                    .values(status="processing")
                )
                if moved.rowcount == 1:  # type: ignore[attr-defined]
                    session.add(
                        ValidationJob(
                            challenge_id=chall.id,
                            state="queued",
                            lease_owner=None,
                            lease_until=None,
                            attempts=0,
                            created_at=context.clock(),
                        )
                    )
                    chall.status = "processing"
                    queued = True
                else:
                    await session.refresh(chall)
    if queued:
        context.wake_validation()
    response = web.json_response(challenge_json(context, chall))
    response.headers.add("Link", f'<{context.urls.authz(chall.authorization_id)}>;rel="up"')
    response.headers["Location"] = context.urls.challenge(chall.id)
    if chall.status == "processing":
        response.headers["Retry-After"] = "1"
    return response
