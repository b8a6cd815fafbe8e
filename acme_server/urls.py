"""The ACME resource URLs; one place builds them and one place parses them back."""

from __future__ import annotations

PREFIX = "/acme"


class Urls:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    def _u(self, path: str) -> str:
        return f"{self.base}{PREFIX}{path}"

    @property
    def directory(self) -> str:
        return self._u("/directory")

    @property
    def new_nonce(self) -> str:
        return self._u("/new-nonce")

    @property
    def new_account(self) -> str:
        return self._u("/new-account")

    @property
    def new_order(self) -> str:
        return self._u("/new-order")

    @property
    def revoke_cert(self) -> str:
        return self._u("/revoke-cert")

    @property
    def key_change(self) -> str:
        return self._u("/key-change")

    @property
    def new_authz(self) -> str:
        return self._u("/new-authz")

    @property
    def renewal_info(self) -> str:
        return self._u("/renewal-info")

    def account(self, account_id: str) -> str:
        return self._u(f"/account/{account_id}")

    def account_orders(self, account_id: str) -> str:
        return self._u(f"/account/{account_id}/orders")

    def order(self, order_id: str) -> str:
        return self._u(f"/order/{order_id}")

    def finalize(self, order_id: str) -> str:
        return self._u(f"/order/{order_id}/finalize")

    def authz(self, authz_id: str) -> str:
        return self._u(f"/authz/{authz_id}")

    def challenge(self, challenge_id: str) -> str:
        return self._u(f"/chall/{challenge_id}")

    def certificate(self, cert_id: str) -> str:
        return self._u(f"/cert/{cert_id}")

    def issuer(self, issuer_id: str) -> str:
        return self._u(f"/issuer/{issuer_id}")

    def account_id_from_kid(self, kid: str) -> str | None:
        prefix = self._u("/account/")
        if not kid.startswith(prefix):
            return None
        rest = kid[len(prefix) :]
        return rest if rest and "/" not in rest else None
