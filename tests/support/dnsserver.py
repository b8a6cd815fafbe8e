"""A small authoritative DNS server for tests: every name exists and answers from memory.

Used by the VA tests and by the certbot/lego interop tests. It listens on UDP *and* TCP on the
same ephemeral port of 127.0.0.1 and serves from daemon threads (``socketserver``).

How a query ``(name, type)`` is answered (names are case-insensitive, trailing dot optional):

* ``set_servfail(name)``: SERVFAIL (also when reached through a CNAME).
* ``set_cname(name, target)``: the CNAME, whatever the type asked (a CNAME query gets only it).
  When the target was configured here with ``set_txt``/``set_a``/``set_aaaa``/``set_cname``, its
  records of the asked type follow (chains up to 8 CNAMEs). Otherwise the answer stops at the
  CNAME, as an authoritative server does for an out-of-zone target, and the client must query the
  target itself (defaults and ``txt_dir`` files do not make a target "configured").
* TXT: the values of ``set_txt`` plus, when ``txt_dir`` is given, the non-empty lines of the file
  ``txt_dir/<name, lower case, no trailing dot>`` read at query time (so a certbot/lego hook in
  another process can ``echo VALUE >> $DIR/_acme-challenge.$DOMAIN`` and ``rm`` it again).
* A / AAAA: the addresses of ``set_a`` / ``set_aaaa`` for that name (``[]`` = none), otherwise
  ``default_a`` / ``default_aaaa`` (so every test name resolves to loopback by default).
* SOA / NS: a plausible SOA (``ns.test.``, ``hostmaster.test.``) or NS (``ns.test.``) owned by the
  queried name, as if every name were its own zone apex.
* Anything else: NOERROR with an empty answer (NODATA). This server never answers NXDOMAIN.

UDP answers larger than the client's limit (512 bytes, or its EDNS size) are sent truncated
(TC bit) so the client retries over TCP.

Run ``python -m tests.support.dnsserver --txt-dir DIR --port PORT`` to serve in the foreground.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import threading
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

TTL = 60
MAX_CNAMES = 8


def _key(name: str | dns.name.Name) -> str:
    text = name.to_text() if isinstance(name, dns.name.Name) else name
    return text.rstrip(".").lower()


class TestDNSServer:
    """An in-memory authoritative DNS server on 127.0.0.1 (UDP and TCP, one port)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        txt_dir: Path | None = None,
        default_a: str | None = "127.0.0.1",
        default_aaaa: str | None = None,
    ) -> None:
        self.txt_dir = Path(txt_dir) if txt_dir is not None else None
        self.default_a = default_a
        self.default_aaaa = default_aaaa
        self._lock = threading.Lock()
        self._txt: dict[str, list[str]] = {}
        self._caa: dict[str, list[str]] = {}
        self._caa_truncated: set[str] = set()
        self._a: dict[str, list[str]] = {}
        self._aaaa: dict[str, list[str]] = {}
        self._cname: dict[str, str] = {}
        self._servfail: set[str] = set()
        self._udp: socketserver.UDPServer | None = None
        self._tcp: socketserver.ThreadingTCPServer | None = None
        self._threads: list[threading.Thread] = []
        self._port = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, port: int = 0) -> tuple[str, int]:
        """Bind UDP and TCP on 127.0.0.1 (``port`` 0 = an ephemeral port free for both)."""
        if self._udp is not None:
            raise RuntimeError("already started")
        for _ in range(50):
            udp = _UDPServer(("127.0.0.1", port), _UDPHandler, self)
            chosen = udp.server_address[1]
            try:
                tcp = _TCPServer(("127.0.0.1", chosen), _TCPHandler, self)
            except OSError:
                udp.server_close()
                if port:
                    raise
                continue
            break
        else:
            raise OSError("no port free for both UDP and TCP")
        self._udp, self._tcp, self._port = udp, tcp, chosen
        for server in (udp, tcp):
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return ("127.0.0.1", chosen)

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._udp = self._tcp = None
        self._threads = []

    @property
    def address(self) -> str:
        if self._udp is None:
            raise RuntimeError("not started")
        return f"127.0.0.1:{self._port}"

    # -- records -------------------------------------------------------------------------------

    def set_txt(self, name: str, values: list[str]) -> None:
        with self._lock:
            self._txt[_key(name)] = list(values)

    def clear_txt(self, name: str) -> None:
        with self._lock:
            self._txt.pop(_key(name), None)

    def set_a(self, name: str, addresses: list[str]) -> None:
        with self._lock:
            self._a[_key(name)] = list(addresses)

    def set_aaaa(self, name: str, addresses: list[str]) -> None:
        with self._lock:
            self._aaaa[_key(name)] = list(addresses)

    def set_cname(self, name: str, target: str) -> None:
        with self._lock:
            self._cname[_key(name)] = _key(target)

    def set_caa(self, name: str, records: list[str]) -> None:
        """CAA records in presentation form, e.g. ``0 issue "certyard.test; accounturi=..."``."""
        with self._lock:
            self._caa[_key(name)] = list(records)

    def set_caa_truncated(self, name: str) -> None:
        """Answer CAA queries for ``name`` with TC set and no records, over UDP and TCP alike:
        a lookup that can never complete (RFC 8659 §3 says the CA must then refuse)."""
        with self._lock:
            self._caa_truncated.add(_key(name))

    def set_servfail(self, name: str) -> None:
        with self._lock:
            self._servfail.add(_key(name))

    # -- answering -----------------------------------------------------------------------------

    def handle(self, wire: bytes, max_size: int | None) -> bytes | None:
        """The response to one query in wire form (``max_size`` for UDP), or None to drop it."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.question:
            question = query.question[0]
            if question.rdtype == dns.rdatatype.CAA and _key(question.name) in self._caa_truncated:
                response.flags |= dns.flags.TC
                return response.to_wire()
            self._answer(response, question.name, question.rdtype)
        limit = 65535
        if max_size is not None:  # UDP: RFC 1035 §4.2.1, or the EDNS size (RFC 6891 §6.2.3)
            limit = max(max_size, query.payload) if query.edns >= 0 else max_size
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire(max_size=limit)

    def _answer(self, response: dns.message.Message, qname: dns.name.Name, qtype: int) -> None:
        name = qname
        with self._lock:
            for _ in range(MAX_CNAMES + 1):
                key = _key(name)
                if key in self._servfail:
                    response.set_rcode(dns.rcode.SERVFAIL)
                    del response.answer[:]
                    return
                target = self._cname.get(key)
                if target is None or qtype == dns.rdatatype.CNAME:
                    break
                response.answer.append(dns.rrset.from_text(name, TTL, "IN", "CNAME", target + "."))
                name = dns.name.from_text(target)
                if not self._known(target):
                    return  # the target lives elsewhere: the client asks for it itself
            rrset = self._records(name, qtype)
        if rrset is not None:
            response.answer.append(rrset)

    def _known(self, key: str) -> bool:
        tables = (self._txt, self._a, self._aaaa, self._cname, self._caa)
        return any(key in table for table in tables) or key in self._servfail

    def _records(self, name: dns.name.Name, qtype: int) -> dns.rrset.RRset | None:
        key = _key(name)
        if qtype == dns.rdatatype.CNAME and key in self._cname:
            return dns.rrset.from_text(name, TTL, "IN", "CNAME", self._cname[key] + ".")
        if qtype == dns.rdatatype.TXT:
            values = [*self._txt.get(key, []), *self._txt_file(key)]
            if not values:
                return None
            rdatas = [_txt_rdata(value) for value in values]
            return dns.rrset.from_rdata_list(name, TTL, rdatas)
        if qtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            table, default = (
                (self._a, self.default_a)
                if qtype == dns.rdatatype.A
                else (self._aaaa, self.default_aaaa)
            )
            addresses = table.get(key, [default] if default else [])
            if not addresses:
                return None
            rdtype = dns.rdatatype.to_text(dns.rdatatype.RdataType(qtype))
            return dns.rrset.from_text_list(name, TTL, "IN", rdtype, addresses)
        if qtype == dns.rdatatype.CAA and key in self._caa:
            return dns.rrset.from_text_list(name, TTL, "IN", "CAA", self._caa[key])
        if qtype == dns.rdatatype.SOA:
            soa = "ns.test. hostmaster.test. 1 3600 600 86400 60"
            return dns.rrset.from_text(name, TTL, "IN", "SOA", soa)
        if qtype == dns.rdatatype.NS:
            return dns.rrset.from_text(name, TTL, "IN", "NS", "ns.test.")
        return None

    def _txt_file(self, key: str) -> list[str]:
        if self.txt_dir is None or not key or "/" in key or "\\" in key or key.startswith("."):
            return []
        try:
            text = (self.txt_dir / key).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [line.strip() for line in text.splitlines() if line.strip()]


def _txt_rdata(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    """One TXT record; values over 255 bytes become several character-strings (RFC 1035 §3.3)."""
    data = value.encode("utf-8")
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


class _UDPServer(socketserver.UDPServer):
    def __init__(
        self,
        address: tuple[str, int],
        handler: type[socketserver.BaseRequestHandler],
        dns_server: TestDNSServer,
    ) -> None:
        self.dns_server = dns_server
        super().__init__(address, handler)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[socketserver.BaseRequestHandler],
        dns_server: TestDNSServer,
    ) -> None:
        self.dns_server = dns_server
        super().__init__(address, handler)


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, _UDPServer)
        data, sock = self.request
        reply = self.server.dns_server.handle(data, max_size=512)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TCPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, _TCPServer)
        conn: socket.socket = self.request
        conn.settimeout(10)
        try:
            while True:  # RFC 1035 §4.2.2: each message is preceded by a two-byte length
                header = _recv_exactly(conn, 2)
                if header is None:
                    return
                (length,) = struct.unpack("!H", header)
                wire = _recv_exactly(conn, length)
                if wire is None:
                    return
                reply = self.server.dns_server.handle(wire, max_size=None)
                if reply is None:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description="certyard test DNS server (foreground)")
    parser.add_argument("--txt-dir", type=Path, default=None, help="directory of TXT files")
    parser.add_argument("--port", type=int, default=0, help="UDP+TCP port (0 = ephemeral)")
    parser.add_argument("--default-a", default="127.0.0.1", help="A answer for unknown names")
    args = parser.parse_args()
    server = TestDNSServer(txt_dir=args.txt_dir, default_a=args.default_a or None)
    server.start(args.port)
    print(server.address, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
