"""The CA's single error type (Boulder-style first tier).

Inside ``ca/`` every failure is a :class:`CAError` with a *kind*; the front ends (ACME, EST, admin
API) each own one function that maps a kind to their wire error and drop ``detail``/``cause``
where they must not leak internal information.
"""

from __future__ import annotations

from typing import Literal, get_args

CAErrorKind = Literal["malformed", "policy", "not_found", "conflict", "internal", "unavailable"]
CA_ERROR_KINDS: tuple[str, ...] = get_args(CAErrorKind)


class CAError(Exception):
    """A failure of the issuance service.

    kinds:
      * ``malformed`` - the request itself is syntactically wrong (bad name, bad reason code);
      * ``policy``    - well-formed but refused by policy (key type, validity window, bad CSR
        signature);
      * ``not_found`` - the certificate or issuer does not exist;
      * ``conflict``  - the state does not allow it (already revoked);
      * ``internal``  - our fault (storage down, signature from the key backend did not verify);
      * ``unavailable`` - the key store is unreachable right now (HSM token removed, session lost,
        device error); the request may succeed later, so front ends answer 503.
    ``cause`` keeps the underlying exception for the logs; it is never shown to a client.
    """

    def __init__(self, kind: CAErrorKind, detail: str, cause: BaseException | None = None) -> None:
        if kind not in CA_ERROR_KINDS:
            raise ValueError(f"unknown CAError kind {kind!r}")
        super().__init__(f"{kind}: {detail}")
        self.kind: CAErrorKind = kind
        self.detail = detail
        self.cause = cause
