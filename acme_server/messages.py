"""ACME request payloads, declared field by field (RFC 8555 §7).

Unknown members are ignored, as RFC 8555 §7 lets clients add them; a member of the wrong type is
one ``malformed`` error naming it, raised by :func:`parse_payload`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from acme_server.errors import malformed


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


class NewAccountPayload(_Payload):
    contact: list[str] | None = None
    terms_of_service_agreed: bool | None = Field(default=None, alias="termsOfServiceAgreed")
    only_return_existing: bool = Field(default=False, alias="onlyReturnExisting")
    external_account_binding: dict[str, Any] | None = Field(
        default=None, alias="externalAccountBinding"
    )


class AccountUpdatePayload(_Payload):
    contact: list[str] | None = None
    status: str | None = None
    terms_of_service_agreed: bool | None = Field(default=None, alias="termsOfServiceAgreed")


class IdentifierPayload(_Payload):
    type: str
    value: str


class NewOrderPayload(_Payload):
    identifiers: list[IdentifierPayload] = Field(min_length=1)
    not_before: str | None = Field(default=None, alias="notBefore")
    not_after: str | None = Field(default=None, alias="notAfter")
    profile: str | None = None
    replaces: str | None = None


class NewAuthzPayload(_Payload):
    identifier: IdentifierPayload


class FinalizePayload(_Payload):
    csr: str


class AuthzUpdatePayload(_Payload):
    status: str | None = None


class RevokePayload(_Payload):
    certificate: str
    reason: int | None = None


P = TypeVar("P", bound=_Payload)


def parse_payload(model: type[P], data: dict[str, Any]) -> P:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise malformed(f"invalid {where}: {first['msg']}") from None
