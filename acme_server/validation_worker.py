"""Background validation: workers on every instance claim queued challenges from the database.

A POST to a challenge only queues a job (RFC 8555 §7.5.1 lets validation happen asynchronously);
a worker pool with a fixed size bounds how many validations run at once. Jobs are leased, so a
job whose instance died is picked up again when the lease runs out.
"""

from __future__ import annotations

import asyncio
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
)
from acme_server.va.caa import check_caa
from acme_server.va.dispatch import validate_challenge
from acme_server.va.remote import RemotePerspectives, RemoteRequest, client_ssl_context
from storage.models import Account, Authorization, Challenge, ValidationJob
from storage.repositories import acme as repo

log = structlog.get_logger("certyard.va")

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
        self._remote: RemotePerspectives | None = None

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
                session,
                self._owner,
                self._context.clock(),
                self._context.config.validation_lease,
                free,
            )
        for challenge_id in claimed:
            self._active += 1
            task = asyncio.create_task(self._validate(challenge_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _validate(self, challenge_id: str) -> None:
        try:
            # Every log line of this validation names its challenge (and, once loaded, its
            # authorization and account): each job runs in its own task, so its own context.
            with structlog.contextvars.bound_contextvars(challenge=challenge_id):
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
        structlog.contextvars.bind_contextvars(authorization=authz.id, account=account.id)
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
            # Multi-perspective validation: the remote agents must confirm what we saw.
            await self._check_remote(
                RemoteRequest(
                    type=chall.type,
                    identifier=authz.identifier_value,
                    token=chall.token,
                    key_authorization=key_auth,
                    account_url=context.urls.account(account.id),
                ),
                records,
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

    def _remote_perspectives(self) -> RemotePerspectives | None:
        config = self._context.config
        if not config.remote_perspectives:
            return None
        if self._remote is None:
            cert, key, ca = (
                config.remote_client_cert,
                config.remote_client_key,
                config.remote_ca_file,
            )
            if cert is None or key is None or ca is None:
                raise ValueError("remote perspectives need a client certificate, key and CA")
            self._remote = RemotePerspectives(
                config.remote_perspectives,
                config.remote_quorum,
                client_ssl_context(cert, key, ca),
                config.remote_timeout,
            )
        return self._remote

    async def _check_remote(self, request: RemoteRequest, records: list[ValidationRecord]) -> None:
        """Ask the remote perspectives (if any); a missed quorum fails the challenge."""
        try:
            remote = self._remote_perspectives()
        except (OSError, ValueError):
            log.exception("remote_perspectives_misconfigured")
            raise ValidationFailure(
                AcmeError("serverInternal", "multi-perspective validation is misconfigured"),
                records,
            ) from None
        if remote is None:
            return
        try:
            outcomes = await remote.check(request)
        except ValidationFailure as failure:
            failure.records = list(records)
            raise
        log.info(
            "remote_perspectives_agreed",
            identifier=request.identifier,
            agreed=[o.name for o in outcomes if o.ok],
            disagreed={o.name: o.detail for o in outcomes if not o.ok},
        )

    async def _run_check(
        self, ctype: str, identifier: str, token: str, key_auth: str, account_url: str
    ) -> list[ValidationRecord]:
        return await validate_challenge(
            ctype,
            identifier,
            token,
            key_auth,
            self._context.config.validation,
            account_url=account_url,
        )

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
