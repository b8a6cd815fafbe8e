"""Background validation: workers on every instance claim queued challenges from the database.

A POST to a challenge only queues a job (RFC 8555 §7.5.1 lets validation happen asynchronously);
a worker pool with a fixed size bounds how many validations run at once. Jobs are leased, so a
job whose instance died is picked up again when the lease runs out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from typing import Any

import structlog
from sqlalchemy import update

from acme_server.context import AcmeContext
from acme_server.errors import AcmeError
from acme_server.jws import jwk_from_json, key_authorization
from acme_server.va import (
    ValidationFailure,
    ValidationRecord,
    validate_dns01,
    validate_http01,
    validate_tlsalpn01,
)
from acme_server.va.caa import check_caa
from storage.models import Account, Authorization, Challenge, ValidationJob
from storage.repositories import acme as repo

log = structlog.get_logger("certyard.va")

LEASE = dt.timedelta(minutes=2)
POLL_SECONDS = 1.0


class ValidationWorker:
    def __init__(self, context: AcmeContext, concurrency: int) -> None:
        self._context = context
        self._owner = secrets.token_hex(8)
        self._concurrency = concurrency
        self._active = 0
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="validation-worker")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self._claim_and_start()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("validation_claim_failed")
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _claim_and_start(self) -> None:
        free = self._concurrency - self._active
        if free <= 0:
            return
        async with self._context.sessions.begin() as session:
            claimed = await repo.claim_validation_jobs(
                session, self._owner, self._context.clock(), LEASE, free
            )
        for challenge_id in claimed:
            self._active += 1
            task = asyncio.create_task(self._validate(challenge_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _validate(self, challenge_id: str) -> None:
        try:
            await self._validate_one(challenge_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("validation_crashed", challenge=challenge_id)
        finally:
            self._active -= 1
            self._wake.set()

    async def _validate_one(self, challenge_id: str) -> None:
        context = self._context
        async with context.sessions() as session:
            chall = await session.get(Challenge, challenge_id)
            authz = await session.get(Authorization, chall.authorization_id) if chall else None
            account = await session.get(Account, authz.account_id) if authz else None
        if chall is None or authz is None or account is None:
            return
        key_auth = key_authorization(chall.token, jwk_from_json(account.jwk))
        records: list[ValidationRecord] = []
        error: dict[str, Any] | None = None
        try:
            records = await self._run_check(
                chall.type,
                authz.identifier_value,
                chall.token,
                key_auth,
                context.urls.account(account.id),
            )
            # RFC 8659 §3 / RFC 8657: the domain's CAA records must let us, this account and
            # this method issue; checked once control is proven, before the authz is valid.
            if authz.identifier_type == "dns":  # RFC 8738 §7: no CAA for IP addresses
                await check_caa(
                    authz.identifier_value,
                    wildcard=authz.wildcard,
                    identities=context.config.caa_identities,
                    account_uri=context.urls.account(account.id),
                    method=chall.type,
                    config=context.config.validation,
                )
        except ValidationFailure as failure:
            records = list(failure.records)
            error = failure.problem.to_json()
        except Exception:
            log.exception("validation_internal_error", challenge=challenge_id)
            error = AcmeError("serverInternal", "validation failed unexpectedly").to_json()
        await self._record(chall, authz, records, error)
        if error is not None and context.rate_limits is not None:
            await context.rate_limits.failed_validation(account.id, context.clock())

    async def _run_check(
        self, ctype: str, identifier: str, token: str, key_auth: str, account_url: str
    ) -> list[ValidationRecord]:
        config = self._context.config.validation
        if ctype == "http-01":
            return await validate_http01(identifier, token, key_auth, config)
        if ctype == "dns-01":
            return await validate_dns01(identifier, key_auth, config)
        if ctype == "dns-account-01":
            return await validate_dns01(identifier, key_auth, config, account_url=account_url)
        if ctype == "tls-alpn-01":
            return await validate_tlsalpn01(identifier, key_auth, config)
        raise ValidationFailure(AcmeError("malformed", f"unknown challenge type {ctype}"), [])

    async def _record(
        self,
        chall: Challenge,
        authz: Authorization,
        records: list[ValidationRecord],
        error: dict[str, Any] | None,
    ) -> None:
        context = self._context
        now = context.clock()
        ok = error is None
        async with context.sessions.begin() as session:
            await session.execute(
                update(Challenge)
                .where(Challenge.id == chall.id, Challenge.status == "processing")
                .values(
                    status="valid" if ok else "invalid",
                    validated_at=now if ok else None,
                    error=error,
                    validation_records=[r.to_json() for r in records],
                )
            )
            # RFC 8555 §7.1.6: one valid challenge makes the authorization valid; a failed one
            # makes it invalid (and with it every order that needs it).
            await session.execute(
                update(Authorization)
                .where(Authorization.id == authz.id, Authorization.status == "pending")
                .values(status="valid" if ok else "invalid")
            )
            await session.execute(
                update(ValidationJob)
                .where(ValidationJob.challenge_id == chall.id)
                .values(state="done", lease_owner=None, lease_until=None)
            )
        log.info(
            "challenge_validated",
            challenge=chall.id,
            type=chall.type,
            identifier=authz.identifier_value,
            ok=ok,
            error=(error or {}).get("detail"),
        )
