"""Settings of the first CA (the wiring layer fills this from certyard's settings)."""

from __future__ import annotations

from dataclasses import dataclass

from ca.errors import CAError
from ca.keys import KEY_ALGORITHMS


@dataclass(frozen=True)
class CAConfig:
    """Hierarchy and profile parameters.

    Validity periods are in days and count notBefore through notAfter inclusive (RFC 5280
    §4.1.2.5, CA/B Forum BR §1.6.1 "Validity Period"). The 90-day leaf default is well inside the
    BR §6.3.2 maximum for subscriber certificates.
    """

    key_algorithm: str = "ec-p256"
    organization: str = "certyard"
    root_common_name: str = "certyard Root CA"
    intermediate_common_name: str = "certyard Issuing CA 1"
    root_validity_days: int = 3650
    intermediate_validity_days: int = 1825
    leaf_validity_days: int = 90
    # Tolerate clients whose clock runs a little behind ours (BR §7.1.2.7 allows up to 48 hours).
    backdate_seconds: int = 60

    def __post_init__(self) -> None:
        if self.key_algorithm not in KEY_ALGORITHMS:
            raise CAError(
                "malformed",
                f"unknown CA key algorithm {self.key_algorithm!r}; "
                f"choose one of {', '.join(KEY_ALGORITHMS)}",
            )
        if not 0 < self.leaf_validity_days < self.intermediate_validity_days:
            raise CAError("malformed", "leaf validity must be positive and shorter than the CA's")
        if self.intermediate_validity_days > self.root_validity_days:
            raise CAError("malformed", "the intermediate must not outlive the root")
        if not 0 <= self.backdate_seconds <= 48 * 3600:
            raise CAError("malformed", "backdate_seconds must be between 0 and 48 hours")
        for value in (self.organization, self.root_common_name, self.intermediate_common_name):
            # RFC 5280 Appendix A: ub-common-name / ub-organization-name are 64 characters.
            if not 0 < len(value) <= 64:
                raise CAError("malformed", "CA names must be 1 to 64 characters long")
