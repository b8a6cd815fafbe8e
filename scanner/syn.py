"""``certyard scan --syn``: a raw TCP SYN pre-scan (root or CAP_NET_RAW), so that TLS is tried
only on ports that answered SYN-ACK.

scapy builds the IPv4/TCP SYN template once per source address; each probe then patches the
destination address, port and sequence number into a copy and fixes the TCP checksum (RFC 9293
§3.1) by hand, and one raw socket sends them all at a capped rate while another reads the
answers. One scapy call per packet (``sr1``) would be hundreds of times slower.

The sequence number is a keyed hash of (address, port): a SYN-ACK counts only if it acknowledges
exactly that number + 1, so stray or spoofed answers cannot mark a port open. The kernel, which
knows no socket for our source port, answers each SYN-ACK with a RST, closing the half-open
connection on the far side.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import ipaddress
import os
import secrets
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from scanner.jobs import Status

SYN, RST, ACK = 0x02, 0x04, 0x10


class SynUnavailable(RuntimeError):
    """Raw sockets are not allowed here (not root / no CAP_NET_RAW)."""


def can_syn_scan() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
    except PermissionError:
        return False
    return True


SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>; Python's socket module does not name it


def _port_filter(port: int) -> tuple[bytes, ctypes.Array[ctypes.c_char]]:
    """A classic BPF program (struct sock_fprog) keeping only TCP segments to ``port``.

    A raw TCP socket receives a copy of every TCP segment the host gets; on a busy host (or
    loopback under load) the unrelated ones fill its buffer and answers are dropped. The kernel
    runs this filter before queueing. Hand-assembled: four instructions need no compiler, and
    scapy's own filter compilation shells out to tcpdump.
    """
    program = [
        (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)   X = IPv4 header length
        (0x48, 0, 0, 2),  # ldh [x + 2]         A = TCP destination port
        (0x15, 0, 1, port),  # jeq #port, accept, drop
        (0x06, 0, 0, 0xFFFF),  # ret #65535     accept
        (0x06, 0, 0, 0),  # ret #0              drop
    ]
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    return fprog, buffer  # the buffer must outlive the setsockopt call


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _source_for(destination: str) -> str:
    """The address the kernel would send from (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((destination, 9))
        return str(probe.getsockname()[0])


@dataclass
class _Template:
    packet: bytearray  # IPv4 header (20 octets) + TCP header (20 octets)
    source: bytes


def _template(source: str, sport: int) -> _Template:
    from scapy.layers.inet import IP, TCP

    # scapy lays out the headers (and their options) once; checksums are redone per packet.
    # The destination is a placeholder, patched per packet.
    raw = bytes(IP(src=source, dst=source, ttl=64) / TCP(sport=sport, dport=0, flags="S",
                                                          window=1024, seq=0))  # fmt: skip
    return _Template(bytearray(raw[:40]), socket.inet_aton(source))


class SynScanner:
    def __init__(self, *, rate: int, timeout: float, retries: int = 1) -> None:
        if not can_syn_scan():
            raise SynUnavailable("--syn needs raw sockets: run as root (or with CAP_NET_RAW)")
        self.rate = max(1, rate)
        self.timeout = timeout
        self.retries = retries
        self.sport = 40000 + secrets.randbelow(20000)
        self._key = os.urandom(16)
        self._templates: dict[str, _Template] = {}
        self.sent = 0

    def _cookie(self, address: bytes, port: int) -> int:
        digest = hashlib.blake2s(address + port.to_bytes(2, "big"), key=self._key).digest()
        return int.from_bytes(digest[:4], "big")

    def _packet(self, destination: str, port: int) -> bytes:
        source = _source_for(destination)
        template = self._templates.get(source)
        if template is None:
            template = self._templates[source] = _template(source, self.sport)
        packet = bytearray(template.packet)
        address = socket.inet_aton(destination)
        packet[16:20] = address
        packet[10:12] = b"\0\0"
        packet[10:12] = _checksum(bytes(packet[:20])).to_bytes(2, "big")  # RFC 791 §3.1
        tcp = packet[20:]
        tcp[2:4] = port.to_bytes(2, "big")
        tcp[4:8] = self._cookie(address, port).to_bytes(4, "big")
        tcp[16:18] = b"\0\0"
        pseudo = template.source + address + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
        tcp[16:18] = _checksum(pseudo + bytes(tcp)).to_bytes(2, "big")
        packet[20:] = tcp
        return bytes(packet)

    async def scan(self, targets: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Status]:
        """(ip, port) → OK (SYN-ACK), REFUSED (RST) or TIMEOUT (no answer); IPv4 only."""
        wanted = {(str(ipaddress.IPv4Address(ip)), port) for ip, port in targets}
        answers: dict[tuple[str, int], Status] = {}
        loop = asyncio.get_running_loop()
        receiver = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        fprog, _keep = _port_filter(self.sport)
        receiver.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        receiver.setblocking(False)
        sender.setblocking(False)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)

        everything_answered = asyncio.Event()

        def on_readable() -> None:
            while True:
                try:
                    data = receiver.recv(65535)
                except BlockingIOError:
                    return
                self._answer(data, wanted, answers)
                if len(answers) == len(wanted):
                    everything_answered.set()

        loop.add_reader(receiver.fileno(), on_readable)
        try:
            pending = sorted(wanted)
            for _ in range(1 + self.retries):
                await self._send_all(sender, [t for t in pending if t not in answers])
                try:
                    await asyncio.wait_for(everything_answered.wait(), self.timeout)
                except TimeoutError:
                    pass  # the silent ones are retried, then reported as timeouts
                pending = [t for t in pending if t not in answers]
                if not pending:
                    break
        finally:
            loop.remove_reader(receiver.fileno())
            receiver.close()
            sender.close()
        return {t: answers.get(t, Status.TIMEOUT) for t in wanted}

    async def _send_all(self, sender: socket.socket, targets: list[tuple[str, int]]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, (ip, port) in enumerate(targets):
            # Pacing: packet i leaves no earlier than i / rate seconds after the first.
            ahead = start + index / self.rate - loop.time()
            if ahead > 0.001:
                await asyncio.sleep(ahead)
            packet = self._packet(ip, port)
            while True:
                try:
                    sender.sendto(packet, (ip, 0))
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            self.sent += 1

    def _answer(
        self,
        data: bytes,
        wanted: set[tuple[str, int]],
        answers: dict[tuple[str, int], Status],
    ) -> None:
        if len(data) < 40:
            return
        header_length = (data[0] & 0x0F) * 4
        tcp = data[header_length : header_length + 20]
        if len(tcp) < 20:
            return
        sport, dport = struct.unpack("!HH", tcp[0:4])
        if dport != self.sport:
            return
        source = data[12:16]
        key = (socket.inet_ntoa(source), sport)
        if key not in wanted or key in answers:
            return
        ack = int.from_bytes(tcp[8:12], "big")
        if ack != (self._cookie(source, sport) + 1) & 0xFFFFFFFF:
            return  # not an answer to our SYN
        flags = tcp[13]
        if flags & SYN and flags & ACK:
            answers[key] = Status.OK
        elif flags & RST:
            answers[key] = Status.REFUSED
