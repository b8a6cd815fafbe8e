"""Wire building blocks shared by every resource: bounded strings, pages, list queries.

Every string a client sends is bounded and free of control characters, and the OpenAPI document
says so (the same Annotated types produce the check and the schema).
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# No control characters (PostgreSQL refuses NUL in text; nothing here needs a newline).
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Text = Annotated[str, StringConstraints(max_length=256, pattern=_PRINTABLE)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_PRINTABLE)]
Cursor = Annotated[
    str, StringConstraints(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_-]+$")
]
# Path parameters (ids, names, kids): what certyard itself ever hands out.
PATH_PATTERN = r"^[A-Za-z0-9._:@-]{1,160}$"
MAX_LIMIT = 500

T = TypeVar("T")


class Model(BaseModel):
    # Unknown members are errors: a misspelt filter must not silently match everything.
    model_config = ConfigDict(extra="forbid")


class Empty(Model):
    pass


class PageQuery(Model):
    limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT, description="page size")
    cursor: Cursor | None = Field(default=None, description="next_cursor of the previous page")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: last")


class ExportFormat(Model):
    format: Annotated[str, StringConstraints(pattern=r"^(csv|json)$")] = Field(
        default="json", description="csv or json"
    )
