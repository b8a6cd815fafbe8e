"""Target definitions and host key pins: what ``certyard deploy target add`` accepts."""

from __future__ import annotations

import asyncssh
import pytest

from deploy.errors import DeployError
from deploy.hostkeys import is_fingerprint, parse_key
from deploy.remote_files import backup_name, temp_name
from deploy.targets import (
    Endpoint,
    Target,
    check_names,
    check_target,
    format_endpoint,
    parse_endpoint,
    parse_mode,
)


def _target(**changes: object) -> Target:
    base: dict[str, object] = {
        "name": "web-1",
        "host": "web1.internal.example",
        "port": 22,
        "username": "deploy",
        "key_file": "/etc/certyard/id_ed25519",
        "host_key": "ssh-ed25519 AAAA",
        "host_key_fingerprint": "SHA256:x",
        "names": ("www.example.com",),
        "profile": "tls-server",
        "key_path": "/etc/ssl/private/www.key",
        "cert_path": "/etc/ssl/certs/www.pem",
        "verify": Endpoint("web1.internal.example", 443, "www.example.com"),
        "reload_command": "systemctl reload nginx",
    }
    base.update(changes)
    return Target(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "names", "expected"),
    [
        ("10.0.0.5:443", ("www.example.com",), Endpoint("10.0.0.5", 443, "www.example.com")),
        ("10.0.0.5:443,", ("www.example.com",), Endpoint("10.0.0.5", 443, None)),
        ("h.example:8443,other.example", (), Endpoint("h.example", 8443, "other.example")),
        ("[::1]:443", ("10.0.0.5",), Endpoint("::1", 443, None)),  # no DNS name: no SNI
        ("h:443", ("*.example.com", "example.com"), Endpoint("h", 443, "example.com")),
    ],
)
def test_verify_endpoint(text: str, names: tuple[str, ...], expected: Endpoint) -> None:
    assert parse_endpoint(text, names) == expected
    assert parse_endpoint(format_endpoint(expected), names) == expected


@pytest.mark.parametrize("text", ["h", "h:0", "h:70000", ":443", "h:x", "h:443,bad_sni"])
def test_bad_verify_endpoint(text: str) -> None:
    with pytest.raises(DeployError) as info:
        parse_endpoint(text, ("www.example.com",))
    assert info.value.kind == "malformed"


def test_modes() -> None:
    assert parse_mode("0640", "--key-mode") == 0o640
    assert parse_mode("600", "--key-mode") == 0o600
    for bad in ("rw", "0800", "12345", ""):
        with pytest.raises(DeployError):
            parse_mode(bad, "--key-mode")


def test_names_are_normalized_and_checked() -> None:
    assert check_names(["WWW.Example.com", "10.0.0.5", "www.example.com"]) == (
        "www.example.com",
        "10.0.0.5",
    )
    for bad in ([], ["bad_name"], ["a..b"]):
        with pytest.raises(DeployError):
            check_names(bad)


def test_dns_and_ip_split() -> None:
    target = _target(names=("www.example.com", "10.0.0.5", "::1"))
    assert target.dns_names == ["www.example.com"]
    assert target.ip_addresses == ["10.0.0.5", "::1"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "-web"}, "target name"),
        ({"key_path": "etc/key.pem"}, "absolute"),
        ({"cert_path": "/etc/ssl/../x.pem"}, ". or .."),
        ({"cert_path": "/etc/ssl/private/www.key"}, "must differ"),
        ({"fullchain_path": "/etc/ssl/certs/"}, "absolute file path"),
        ({"reload_command": "  "}, "--reload-command"),
        ({"owner": "root;rm"}, "--owner"),
        ({"port": 0}, "--port"),
        ({"host": "a b"}, "--host"),
    ],
)
def test_bad_targets(changes: dict[str, object], message: str) -> None:
    with pytest.raises(DeployError) as info:
        check_target(_target(**changes))
    assert message in str(info.value)


def test_good_target_passes() -> None:
    target = _target(owner="root", group="ssl-cert", fullchain_path="/etc/ssl/certs/full.pem")
    assert check_target(target) is target
    assert target.paths()[-1] == "/etc/ssl/certs/full.pem"
    summary = target.summary()
    assert summary["key_mode"] == "0600" and summary["verify"] == (
        "web1.internal.example:443,www.example.com"
    )


def test_host_key_pins() -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    line = key.export_public_key("openssh").decode().strip()  # "ssh-ed25519 AAAA… comment"
    pin = parse_key(line)
    assert pin.algorithm == "ssh-ed25519"
    assert pin.line == " ".join(line.split()[:2])
    assert pin.fingerprint == key.get_fingerprint("sha256")
    # A known_hosts line: host patterns (and a marker) before the key.
    assert parse_key(f"@cert-authority,x [web1]:2222,10.0.0.5 {line}") == pin
    assert is_fingerprint(pin.fingerprint) and not is_fingerprint(line)
    for bad in ("", "ssh-ed25519", "ssh-ed25519 not-base64!", "hello world"):
        with pytest.raises(DeployError):
            parse_key(bad)


def test_remote_file_names() -> None:
    assert backup_name("/etc/ssl/a.pem") == "/etc/ssl/a.pem.certyard-prev"
    assert backup_name("/etc/ssl/a.pem", 3) == "/etc/ssl/a.pem.certyard-prev.3"
    tmp = temp_name("/etc/ssl/a.pem")
    assert tmp.startswith("/etc/ssl/.a.pem.certyard-new-") and tmp != temp_name("/etc/ssl/a.pem")
