"""The scanner's copy of the issuance records' serial form agrees with the CA's."""

from __future__ import annotations

import secrets

from ca.serials import serial_to_hex as ca_form
from scanner.issued import serial_to_hex as scanner_form


def test_same_serial_form_as_the_ca() -> None:
    for serial in [
        1,
        15,
        16,
        255,
        256,
        0x7F,
        0x80,
        *(secrets.randbits(159) + 1 for _ in range(50)),
    ]:
        assert scanner_form(serial) == ca_form(serial)
