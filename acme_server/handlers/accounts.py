"""Accounts: newAccount, account update and deactivation, key rollover (RFC 8555 §7.3)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from acme_server import eab
from acme_server.context import AcmeContext, ctx
from acme_server.errors import AcmeError, malformed
from acme_server.ids import new_id
from acme_server.jws import jwk_thumbprint, jwk_to_json, verify_key_change
from acme_server.messages import AccountUpdatePayload, NewAccountPayload, parse_payload
from acme_server.pipeline import first_account_with_key, verify_post
from storage.models import Account, EabKey

MAX_CONTACTS = 10
# A pragmatic addr-spec check: one address, no hfields (RFC 8555 §7.3 lets servers refuse them).
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
)


def validate_contacts(contacts: list[str]) -> list[str]:
    """RFC 8555 §7.3: ``mailto:`` only; others are unsupportedContact, bad ones invalidContact."""
    if len(contacts) > MAX_CONTACTS:
        raise AcmeError("invalidContact", f"at most {MAX_CONTACTS} contacts")
    checked = []
    for contact in contacts:
        scheme, sep, address = contact.partition(":")
        if not sep or scheme.lower() != "mailto":
            raise AcmeError(
                "unsupportedContact", f"only mailto: contacts are supported, not {contact[:80]!r}"
            )
        if "?" in address or "," in address or not _EMAIL.match(address):
            raise AcmeError(
                "invalidContact", f"{contact[:80]!r} is not a single valid email address"
            )
        domain = address.rsplit("@", 1)[1]
        if "." not in domain:
            raise AcmeError("invalidContact", f"{contact[:80]!r} has no domain")
        checked.append(f"mailto:{address}")
    return checked


def account_json(context: AcmeContext, account: Account) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": account.status,
        "contact": list(account.contact),
        "orders": context.urls.account_orders(account.id),
    }
    if account.tos_agreed:
        body["termsOfServiceAgreed"] = True
    return body


def account_response(context: AcmeContext, account: Account, status: int = 200) -> web.Response:
    response = web.json_response(account_json(context, account), status=status)
    response.headers["Location"] = context.urls.account(account.id)
    return response


async def new_account(request: web.Request) -> web.Response:
    context = ctx(request)
    verified = await verify_post(request, jwk_allowed=True, kid_allowed=False)
    payload = parse_payload(NewAccountPayload, verified.payload())
    thumbprint = jwk_thumbprint(verified.key)
    existing = await first_account_with_key(context, thumbprint)
    if existing is not None:
        # RFC 8555 §7.3.1: an existing account answers 200 with its Location.
        return account_response(context, existing, 200)
    if payload.only_return_existing:
        raise AcmeError("accountDoesNotExist", "no account exists with this key")
    if context.config.terms_of_service and payload.terms_of_service_agreed is not True:
        raise malformed("the client must agree to the terms of service (termsOfServiceAgreed)")
    binding = payload.external_account_binding
    if binding is None and context.config.require_eab:
        raise AcmeError(
            "externalAccountRequired", "this server requires an external account binding"
        )
    contacts = validate_contacts(payload.contact or [])
    if context.rate_limits is not None:
        await context.rate_limits.new_account(request.remote or "unknown", context.clock())
    eab_kid = None
    if binding is not None:
        eab_kid = eab.kid_of(binding)
        async with context.sessions() as session:
            key = await session.get(EabKey, eab_kid) if eab_kid else None
        eab.verify_binding(
            binding,
            account_key=verified.key,
            url=context.urls.new_account,
            key=key,
            now=context.clock(),
        )
    account = Account(
        id=new_id(),
        key_thumbprint=thumbprint,
        jwk=jwk_to_json(verified.key),
        status="valid",
        contact=contacts,
        tos_agreed=bool(payload.terms_of_service_agreed),
        created_at=context.clock(),
        eab_kid=eab_kid,
    )
    try:
        async with context.sessions.begin() as session:
            session.add(account)
            await session.flush()
            if eab_kid is not None and not await eab.bind(session, eab_kid, account.id):
                # The key is bound already: the whole newAccount rolls back.
                raise AcmeError("unauthorized", "this external account key is already in use")
    except IntegrityError:
        # Another request (maybe on another instance) created it first: answer with that one.
        winner = await first_account_with_key(context, thumbprint)
        if winner is None:
            raise
        return account_response(context, winner, 200)
    return account_response(context, account, 201)


async def account(request: web.Request) -> web.Response:
    context = ctx(request)
    verified = await verify_post(request)
    acct = verified.require_account()
    if acct.id != request.match_info["id"]:
        raise AcmeError("unauthorized", "the account URL does not match the kid")
    if verified.jws.is_post_as_get:
        return account_response(context, acct)
    payload = parse_payload(AccountUpdatePayload, verified.payload())
    values: dict[str, Any] = {}
    if payload.contact is not None:
        values["contact"] = validate_contacts(payload.contact)
    if payload.terms_of_service_agreed:
        values["tos_agreed"] = True
    if payload.status is not None:
        # RFC 8555 §7.3.6: the only status a client may set is "deactivated".
        if payload.status != "deactivated":
            raise malformed("the only account status a client may request is 'deactivated'")
        values["status"] = "deactivated"
    if values:
        async with context.sessions.begin() as session:
            await session.execute(update(Account).where(Account.id == acct.id).values(**values))
        for name, value in values.items():
            setattr(acct, name, value)
    return account_response(context, acct)


async def key_change(request: web.Request) -> web.Response:
    """RFC 8555 §7.3.5: roll the account over to a new key."""
    context = ctx(request)
    verified = await verify_post(request)
    acct = verified.require_account()
    new_key = verify_key_change(verified.jws, verified.key, context.urls.account(acct.id))
    thumbprint = jwk_thumbprint(new_key)
    other = await first_account_with_key(context, thumbprint)
    if other is not None:
        raise AcmeError(
            "malformed",
            "the new key is already in use by an account",
            status=409,
            headers={"Location": context.urls.account(other.id)},
        )
    try:
        async with context.sessions.begin() as session:
            await session.execute(
                update(Account)
                .where(Account.id == acct.id)
                .values(key_thumbprint=thumbprint, jwk=jwk_to_json(new_key))
            )
    except IntegrityError:
        raise AcmeError(
            "malformed", "the new key is already in use by an account", status=409
        ) from None
    acct.key_thumbprint = thumbprint
    acct.jwk = jwk_to_json(new_key)
    return account_response(context, acct)
