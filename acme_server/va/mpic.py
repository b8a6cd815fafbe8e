"""The Baseline Requirements' minimums for Multi-Perspective Issuance Corroboration (MPIC).

CA/Browser Forum Baseline Requirements §3.2.2.9: a publicly trusted CA corroborates each domain
validation from at least two remote Network Perspectives, and may issue only when the remote
perspectives that do *not* corroborate stay within the "Quorum Requirements" table:

    remote perspectives used    allowed non-corroborations
    2-5                         1
    6 or more                   2

The corroborating perspectives must also fall in at least two distinct RIR service regions, so
at least two must corroborate whatever the table allows (with two perspectives: both).

certyard counts its remote agents (``acme.va_agents``) as the remote perspectives; the server's
own validation is the Primary Network Perspective and is not counted.
"""

from __future__ import annotations

# BR §3.2.2.9: MPIC uses at least two remote perspectives (later BR phases raise this;
# acme.mpic_min_perspectives lets an operator follow them).
BR_MIN_REMOTE_PERSPECTIVES = 2
# At least two corroborating perspectives (two distinct RIR regions, BR §3.2.2.9).
BR_MIN_CORROBORATING = 2


def br_allowed_non_corroborations(perspectives: int) -> int:
    """The BR §3.2.2.9 quorum table: how many remote perspectives may disagree."""
    if perspectives < BR_MIN_REMOTE_PERSPECTIVES:
        raise ValueError(
            f"the Baseline Requirements need at least {BR_MIN_REMOTE_PERSPECTIVES} remote "
            f"perspectives, not {perspectives}"
        )
    return 1 if perspectives <= 5 else 2


def br_quorum(perspectives: int) -> int:
    """How many of ``perspectives`` remote perspectives must corroborate under the BR."""
    return max(perspectives - br_allowed_non_corroborations(perspectives), BR_MIN_CORROBORATING)
