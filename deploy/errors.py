"""The deployer's one error type: a kind and a line a person can act on.

Kinds: "malformed" (bad target definition), "not_found", "conflict" (target exists),
"host_key" (no pin, or the host presents another key), "ssh" (cannot connect or log in),
"remote" (a command or file operation on the target failed), "issuance" (the CA refused).
"""

from __future__ import annotations

from typing import Literal

DeployErrorKind = Literal[
    "malformed", "not_found", "conflict", "host_key", "ssh", "remote", "issuance"
]


class DeployError(Exception):
    def __init__(self, kind: DeployErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: DeployErrorKind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message
