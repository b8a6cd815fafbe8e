"""RFC 9773 certificate identifiers and windows."""

import datetime as dt

import pytest

from acme_server.ari import CertId, default_window, parse_cert_id, revoked_window, serial_octets
from acme_server.errors import AcmeError


def test_rfc9773_example_round_trip() -> None:
    # RFC 9773 §4.1 example: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:
    # DE:01:C8:D4 and serial 00:87:65:43:21 give "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
    cert_id = parse_cert_id("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
    assert cert_id.key_identifier.hex() == "69885b6b87464041e1b37b847ba0ae2cde01c8d4"
    assert cert_id.serial == 0x87654321
    assert cert_id.encode() == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@pytest.mark.parametrize(
    "text",
    ["", "abc", "abc.", ".abc", "a+b.AQ", "aYhb.gA", "aYhb.AAE", "aYhb.AQ=", "aY hb.AQ"],
)
def test_malformed(text: str) -> None:
    with pytest.raises(AcmeError) as info:
        parse_cert_id(text)
    assert info.value.type == "malformed"


def test_serial_octets_are_minimal_der() -> None:
    assert serial_octets(0x7F) == b"\x7f"
    assert serial_octets(0x80) == b"\x00\x80"
    assert CertId(b"\x01", 0x80).encode() == "AQ.AIA"


def test_default_window_in_last_third_and_stable() -> None:
    nb = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    na = nb + dt.timedelta(days=90)
    w1 = default_window(nb, na, "aa")
    assert default_window(nb, na, "aa") == w1
    assert nb + dt.timedelta(days=60) <= w1.start < w1.end < na
    starts = {default_window(nb, na, format(i, "x")).start for i in range(50)}
    assert len(starts) > 40  # jitter spreads certificates issued together


def test_revoked_window_is_in_the_past() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    w = revoked_window(now)
    assert w.start < w.end < now
