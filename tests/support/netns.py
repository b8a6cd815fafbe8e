"""Linux network namespaces for tests: one isolated host per namespace, linked to us by a veth.

Each :class:`Namespace` gets its own loopback (so a process in it can bind ``127.0.0.1:53``
without meeting ours) and one veth pair: the host end ``10.200.N.1/30`` and the namespace end
``10.200.N.2/30`` (10.200.0.0/16 is private address space; only these point-to-point /30 links
are made and no route leads anywhere else, so nothing in a namespace can reach beyond us).

Everything created is deleted again by :meth:`NetnsLab.close` (exactly the namespaces and links
this object made). Creating namespaces needs root and the ``ip`` tool (iproute2); without them the
test is skipped, or fails under ``CI=true`` (tests.support.tools.missing).
"""

from __future__ import annotations

import ipaddress
import os
import random
import subprocess
from dataclasses import dataclass, field

from tests.support.tools import find_tool, missing

# The private range the labs take their /30 links from (RFC 1918).
LAB_RANGE = ipaddress.IPv4Network("10.200.0.0/16")


@dataclass(frozen=True)
class Namespace:
    name: str
    host_link: str  # the veth end left on the host
    host_address: str  # e.g. 10.200.7.1
    address: str  # the namespace's end, e.g. 10.200.7.2

    def command(self, argv: list[str], ip: str = "ip") -> list[str]:
        """``argv`` run inside this namespace (``ip netns exec`` execs it: same PID)."""
        return [ip, "netns", "exec", self.name, *argv]


def require_netns() -> str:
    """The path of ``ip``, when this process may create namespaces; else skip (fail in CI)."""
    ip = find_tool("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None
    )
    if ip is None:
        missing("the ip tool (iproute2) is needed for network namespaces")
        raise AssertionError("unreachable")  # pragma: no cover
    if os.geteuid() != 0:
        missing("network namespaces need root")
    # Root in a container may still lack CAP_SYS_ADMIN: try one (and delete it at once).
    probe = f"cyva{os.getpid()}-probe"
    made = subprocess.run([ip, "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        missing(f"cannot create a network namespace: {made.stderr.strip()}")
    subprocess.run([ip, "netns", "del", probe], capture_output=True, timeout=30)
    return ip


@dataclass
class NetnsLab:
    """Creates namespaces on demand; :meth:`close` deletes exactly those it created."""

    ip: str
    prefix: str = field(default_factory=lambda: f"cyva{os.getpid()}")
    namespaces: list[Namespace] = field(default_factory=list)
    _links: list[str] = field(default_factory=list)

    def _run(self, *argv: str) -> None:
        done = subprocess.run([self.ip, *argv], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")

    def _free_subnet(self) -> ipaddress.IPv4Network:
        shown = subprocess.run(
            [self.ip, "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=30
        ).stdout
        used = {
            ipaddress.IPv4Interface(word).network
            for line in shown.splitlines()
            for word in line.split()
            if "/" in word and word[0].isdigit()
        }
        candidates: list[ipaddress.IPv4Network] = list(LAB_RANGE.subnets(new_prefix=30))
        random.shuffle(candidates)
        for subnet in candidates:
            if not any(subnet.overlaps(other) for other in used):
                return subnet
        raise RuntimeError(f"no free /30 left in {LAB_RANGE}")

    def add(self) -> Namespace:
        index = len(self.namespaces)
        name = f"{self.prefix}-{index}"
        # Interface names are at most 15 characters (IFNAMSIZ).
        host_link = f"cyh{os.getpid() % 10**7}x{index}"[:15]
        inner = f"cyn{os.getpid() % 10**7}x{index}"[:15]
        subnet = self._free_subnet()
        host_address, address = (str(a) for a in list(subnet.hosts())[:2])
        self._run("netns", "add", name)
        self.namespaces.append(Namespace(name, host_link, host_address, address))
        self._run("link", "add", host_link, "type", "veth", "peer", "name", inner)
        self._links.append(host_link)
        self._run("link", "set", inner, "netns", name)
        self._run("addr", "add", f"{host_address}/30", "dev", host_link)
        self._run("link", "set", host_link, "up")
        self._run("-n", name, "addr", "add", f"{address}/30", "dev", inner)
        self._run("-n", name, "link", "set", inner, "up")
        self._run("-n", name, "link", "set", "lo", "up")
        return self.namespaces[-1]

    def close(self) -> None:
        """Delete our namespaces (their veth ends go with them, and so do the host ends)."""
        errors: list[str] = []
        for namespace in reversed(self.namespaces):
            try:
                self._run("netns", "del", namespace.name)
            except RuntimeError as exc:
                errors.append(str(exc))
        for link in self._links:
            # Normally gone with its peer; delete it when a half-made namespace left it behind.
            subprocess.run([self.ip, "link", "del", link], capture_output=True, timeout=30)
        self.namespaces.clear()
        self._links.clear()
        if errors:
            raise RuntimeError("; ".join(errors))
