"""Orders: newOrder, order reads, the account's orders list, finalize (RFC 8555 §7.4)."""

from __future__ import annotations

import base64
import datetime as dt
import secrets

import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from acme_server import eab
from acme_server.context import AcmeContext, ctx
from acme_server.csr import check_csr, decode_csr_field
from acme_server.errors import AcmeError, Subproblem, malformed
from acme_server.identifiers import Identifier, parse_identifiers
from acme_server.ids import new_id
from acme_server.jws import jwk_public_key_der
from acme_server.messages import (
    FinalizePayload,
    NewAuthzPayload,
    NewOrderPayload,
    parse_payload,
)
from acme_server.pipeline import require_post_as_get, verify_post
from acme_server.renewal import replaced_certificate
from acme_server.states import challenge_types
from acme_server.va import ValidationFailure
from acme_server.va.caa import check_caa
from acme_server.views import authz_json, load_order, order_json
from ca.errors import CAError
from storage.models import Account, Authorization, Challenge, EabKey, Order, OrderAuthorization
from storage.repositories import acme as repo

log = structlog.get_logger("certyard.acme")


def _parse_time(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise malformed(f"{name} is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise malformed(f"{name} must carry a time zone")
    return parsed


def _order_response(
    context: AcmeContext, order: Order, authz_ids: list[str], status: int = 200
) -> web.Response:
    response = web.json_response(order_json(context, order, authz_ids), status=status)
    response.headers["Location"] = context.urls.order(order.id)
    if order.status == "processing":
        response.headers["Retry-After"] = "1"
    return response


async def new_order(request: web.Request) -> web.Response:
    context = ctx(request)
    verified = await verify_post(request)
    account = verified.require_account()
    payload = parse_payload(NewOrderPayload, verified.payload())
    identifiers = parse_identifiers(payload.identifiers, context.config.max_identifiers)
    not_before = _parse_time(payload.not_before, "notBefore")
    not_after = _parse_time(payload.not_after, "notAfter")
    if not_before and not_after and not_after <= not_before:
        raise malformed("notAfter must be later than notBefore")
    config = context.config
    if payload.profile is not None and payload.profile not in config.profiles:
        # draft-ietf-acme-profiles §4: an unknown profile is invalidProfile.
        raise AcmeError(
            "invalidProfile",
            f"profile {payload.profile[:64]!r} is not one of {sorted(config.profiles)}",
        )
    profile = payload.profile or config.default_profile
    if account.eab_kid is not None:
        async with context.sessions() as session:
            key = await session.get(EabKey, account.eab_kid)
        if key is None or key.revoked_at is not None:
            raise AcmeError("unauthorized", "the account's external account key was revoked")
        eab.check_order(key, identifiers, profile)
    if context.rate_limits is not None:
        await context.rate_limits.new_order(
            account.id, account.eab_kid, [i.value for i in identifiers], context.clock()
        )
    replaces = None
    if payload.replaces is not None:
        replaces = await replaced_certificate(context, account.id, payload.replaces, identifiers)
    now = context.clock()
    order = Order(
        id=new_id(),
        account_id=account.id,
        status="pending",
        identifiers=[i.to_json() for i in identifiers],
        not_before=not_before,
        not_after=not_after,
        expires_at=now + config.order_lifetime,
        error=None,
        certificate_id=None,
        created_at=now,
        updated_at=now,
        profile=payload.profile,
        replaces=replaces,
    )
    authz_ids: list[str] = []
    all_valid = True
    async with context.sessions.begin() as session:
        session.add(order)
        await session.flush()
        for position, ident in enumerate(identifiers):
            authz = await _authorization_for(session, context, account.id, ident, now)
            all_valid = all_valid and authz.status == "valid"
            authz_ids.append(authz.id)
            session.add(
                OrderAuthorization(order_id=order.id, authorization_id=authz.id, position=position)
            )
        if all_valid:
            order.status = "ready"
    log.info(
        "order_created", order=order.id, account=account.id, names=[i.value for i in identifiers]
    )
    return _order_response(context, order, authz_ids, 201)


async def _authorization_for(
    session: AsyncSession,
    context: AcmeContext,
    account_id: str,
    ident: Identifier,
    now: dt.datetime,
) -> Authorization:
    config = context.config
    if config.authz_reuse > dt.timedelta(0):
        # Reuse a recent valid authorization that outlives this order (RFC 8555 §7.1.3 allows it).
        reused = await repo.reusable_authorization(
            session,
            account_id=account_id,
            identifier_type=ident.type,
            identifier_value=ident.base_value,
            wildcard=ident.wildcard,
            now=now,
            created_after=now - config.authz_reuse,
            valid_until_at_least=now + config.order_lifetime,
        )
        if reused is not None:
            return reused
    authz = Authorization(
        id=new_id(),
        account_id=account_id,
        identifier_type=ident.type,
        identifier_value=ident.base_value,
        wildcard=ident.wildcard,
        status="pending",
        expires_at=now + config.authz_lifetime,
        created_at=now,
    )
    session.add(authz)
    await session.flush()
    for ctype in challenge_types(ident.wildcard, ident.type, dns_account=config.dns_account_01):
        session.add(
            Challenge(
                id=new_id(),
                authorization_id=authz.id,
                type=ctype,
                # RFC 8555 §8.1: at least 128 bits of entropy, base64url.
                token=secrets.token_urlsafe(32),
                status="pending",
                validated_at=None,
                error=None,
                validation_records=None,
            )
        )
    return authz


async def new_authz(request: web.Request) -> web.Response:
    """RFC 8555 §7.4.1 pre-authorization: an authorization outside any order."""
    context = ctx(request)
    if not context.config.allow_preauthorization:
        raise AcmeError("malformed", "pre-authorization is not enabled on this server", status=404)
    verified = await verify_post(request)
    account = verified.require_account()
    payload = parse_payload(NewAuthzPayload, verified.payload())
    (ident,) = parse_identifiers([payload.identifier], 1)
    if ident.wildcard:
        # §7.4.1: the identifier is exactly what the authorization is for; no wildcards.
        raise AcmeError("rejectedIdentifier", "pre-authorization cannot cover a wildcard")
    if account.eab_kid is not None:
        async with context.sessions() as session:
            key = await session.get(EabKey, account.eab_kid)
        if key is None or key.revoked_at is not None:
            raise AcmeError("unauthorized", "the account's external account key was revoked")
        eab.check_order(key, [ident], context.config.default_profile)
    now = context.clock()
    async with context.sessions.begin() as session:
        authz = await _authorization_for(session, context, account.id, ident, now)
        challenges = await repo.authz_challenges(session, authz.id)
    response = web.json_response(authz_json(context, authz, challenges, now), status=201)
    response.headers["Location"] = context.urls.authz(authz.id)
    return response


async def get_order(request: web.Request) -> web.Response:
    context = ctx(request)
    verified = await verify_post(request)
    require_post_as_get(verified)
    account = verified.require_account()
    async with context.sessions.begin() as session:
        order, authzs = await load_order(session, context, request.match_info["id"], account.id)
    return _order_response(context, order, [a.id for a in authzs])


async def account_orders(request: web.Request) -> web.Response:
    """RFC 8555 §7.1.2.1: the account's orders, paginated with Link rel="next"."""
    context = ctx(request)
    verified = await verify_post(request)
    require_post_as_get(verified)
    account = verified.require_account()
    if account.id != request.match_info["id"]:
        raise AcmeError("unauthorized", "an account may only list its own orders")
    after = _decode_cursor(request.query.get("cursor"))
    limit = context.config.orders_page_size
    async with context.sessions() as session:
        page = await repo.account_orders_page(session, account.id, after=after, limit=limit)
    more = len(page) > limit
    page = page[:limit]
    response = web.json_response({"orders": [context.urls.order(o.id) for o in page]})
    if more:
        cursor = _encode_cursor(page[-1])
        response.headers.add(
            "Link", f'<{context.urls.account_orders(account.id)}?cursor={cursor}>;rel="next"'
        )
    return response


def _encode_cursor(order: Order) -> str:
    raw = f"{order.created_at.timestamp():.6f}|{order.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(value: str | None) -> tuple[dt.datetime, str] | None:
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        stamp, order_id = raw.split("|", 1)
        return dt.datetime.fromtimestamp(float(stamp), dt.UTC), order_id
    except (ValueError, UnicodeDecodeError):
        raise malformed("invalid cursor") from None


async def finalize(request: web.Request) -> web.Response:
    """RFC 8555 §7.4: check the CSR, then issue exactly once even under concurrent requests."""
    context = ctx(request)
    verified = await verify_post(request)
    account = verified.require_account()
    payload = parse_payload(FinalizePayload, verified.payload())
    order_id = request.match_info["id"]
    async with context.sessions.begin() as session:
        order, authzs = await load_order(session, context, order_id, account.id)
    stale: dt.datetime | None = None
    if (
        order.status == "processing"
        and order.certificate_id is None
        and order.updated_at <= context.clock() - context.config.finalize_stale_after
    ):
        # A finalize whose instance died between "processing" and "valid" (nothing was released:
        # the certificate commits with the order's move to valid). Take the order over.
        stale = order.updated_at
    elif order.status != "ready":
        raise AcmeError(
            "orderNotReady",
            f"order is {order.status}, not ready",
            headers={"Location": context.urls.order(order.id)},
        )
    der = decode_csr_field(payload.csr)
    names = [i["value"] for i in order.identifiers if i["type"] == "dns"]
    ips = [i["value"] for i in order.identifiers if i["type"] == "ip"]
    checked = check_csr(
        der,
        order_dns_names=names,
        order_ips=ips,
        account_key_der=jwk_public_key_der(verified.key),
    )
    await recheck_caa(context, account, authzs)
    now = context.clock()
    # The ready -> processing compare-and-set is the single point a finalize wins at; a second
    # concurrent finalize finds the order no longer ready and gets orderNotReady.
    # ``now`` becomes the order's updated_at: the token this finalize's later updates require,
    # so a finalize that was taken over (above) can never also complete the order.
    async with context.sessions.begin() as session:
        if stale is None:
            won = await repo.set_order_status(session, order.id, ["ready"], "processing", now)
        else:
            won = await repo.set_order_status(
                session, order.id, ["processing"], "processing", now, expected_updated_at=stale
            )
    if not won:
        raise AcmeError("orderNotReady", "order is already being finalized")
    try:
        async with context.sessions.begin() as session:
            issued = await context.issuer.issue(
                checked.csr,
                profile=order.profile or context.config.default_profile,
                dns_names=checked.dns_names,
                ip_addresses=checked.ip_addresses,
                requester=f"acme:{account.id}",
                account_id=account.id,
                order_id=order.id,
                not_before=order.not_before,
                not_after=await _capped_not_after(context, account, order),
                session=session,
            )
            # The certificate row and the order's move to valid commit together.
            if not await repo.set_order_status(
                session,
                order.id,
                ["processing"],
                "valid",
                context.clock(),
                expected_updated_at=now,
                certificate_id=issued.id,
            ):
                raise _Superseded()
    except _Superseded:
        # Rolled back: the completed record stays "signing", never released.
        raise AcmeError("orderNotReady", "order was finalized by another request") from None
    except Exception as exc:
        error = _issuance_problem(exc)
        async with context.sessions.begin() as session:
            if error.http_status == 503:
                # Nothing was issued and the fault is ours and temporary: the client may finalize
                # again once the CA is back, so the order returns to ready.
                await repo.set_order_status(
                    session,
                    order.id,
                    ["processing"],
                    "ready",
                    context.clock(),
                    expected_updated_at=now,
                )
            else:
                await repo.set_order_status(
                    session,
                    order.id,
                    ["processing"],
                    "invalid",
                    context.clock(),
                    expected_updated_at=now,
                    error=error.to_json(),
                )
        raise error from exc
    log.info("order_finalized", order=order.id, certificate=issued.id)
    # The compare-and-set above committed exactly this: answer from it rather than reading the
    # order back (a "valid" order with a certificate no longer changes, RFC 8555 §7.1.6).
    order.status = "valid"
    order.certificate_id = issued.id
    return _order_response(context, order, [a.id for a in authzs])


async def recheck_caa(context: AcmeContext, account: Account, authzs: list[Authorization]) -> None:
    """BR §3.2.2.8: CAA must hold at issuance; an old validation's check is repeated, for every
    name of the order, and every refusal is a subproblem of one ``caa`` error."""
    cutoff = context.clock() - context.config.caa_recheck_after
    problems: list[Subproblem] = []
    async with context.sessions() as session:
        for authz in authzs:
            if authz.identifier_type != "dns":
                continue  # RFC 8738 §7: CAA does not apply to IP addresses
            challenges = await repo.authz_challenges(session, authz.id)
            done = [c for c in challenges if c.status == "valid" and c.validated_at is not None]
            if not done or min(c.validated_at for c in done if c.validated_at) > cutoff:
                continue
            try:
                await check_caa(
                    authz.identifier_value,
                    wildcard=authz.wildcard,
                    identities=context.config.caa_identities,
                    account_uri=context.urls.account(account.id),
                    method=done[0].type,
                    config=context.config.validation,
                )
            except ValidationFailure as failure:
                value = ("*." if authz.wildcard else "") + authz.identifier_value
                problems.append(
                    Subproblem("caa", failure.problem.detail, {"type": "dns", "value": value})
                )
    if problems:
        raise AcmeError(
            "caa",
            "CAA records forbid issuance for some names (see subproblems)",
            subproblems=problems,
        )


async def _capped_not_after(
    context: AcmeContext, account: Account, order: Order
) -> dt.datetime | None:
    """RFC 8555 §7.3.4 policy: an EAB key's max validity caps what its account gets."""
    if account.eab_kid is None:
        return order.not_after
    async with context.sessions() as session:
        key = await session.get(EabKey, account.eab_kid)
    return eab.capped_not_after(
        key, order.not_before, order.not_after, context.clock(), context.config.ca_backdate
    )


class _Superseded(Exception):
    """Another finalize took this order over while we were signing."""


def _issuance_problem(exc: Exception) -> AcmeError:
    if isinstance(exc, AcmeError):
        return exc
    if isinstance(exc, CAError) and exc.kind in ("malformed", "policy"):
        return AcmeError("badCSR", exc.detail)
    if isinstance(exc, CAError) and exc.kind == "unavailable":
        # The HSM is away: a temporary condition, so 503 with Retry-After (RFC 9110 §15.6.4).
        log.error("issuance_unavailable", error=exc.detail)
        return AcmeError(
            "serverInternal",
            "the CA cannot sign right now; try again later",
            status=503,
            headers={"Retry-After": "30"},
        )
    log.error("issuance_failed", error=repr(exc))
    return AcmeError("serverInternal", "the certificate could not be issued")
