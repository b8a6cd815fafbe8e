"""``certyard va-agent``: a remote validation agent for multi-perspective validation.

It serves ``POST /validate`` (see :mod:`acme_server.va.remote`) over mutually authenticated TLS
on ``--listen``: its certificate is ``--cert``/``--key`` and every client must present a
certificate issued by ``--ca``. It validates with its own settings (``acme.dns_resolvers``,
``acme.validation_deny``, ``acme.http01_port``, ``acme.tlsalpn01_port``,
``acme.validation_timeout_seconds``), so it sees the network from where it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from pathlib import Path

import structlog
from aiohttp import web

from acme_server.va import ValidationConfig
from acme_server.va.remote import agent_ssl_context, create_agent_app
from certyard.settings import Settings, parse_hostport

log = structlog.get_logger("certyard.va_agent")


class UsageError(Exception):
    pass


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("va-agent", help="run a remote validation agent (multi-perspective)")
    p.add_argument("--listen", required=True, metavar="HOST:PORT")
    p.add_argument("--cert", required=True, type=Path, metavar="CERT.pem")
    p.add_argument("--key", required=True, type=Path, metavar="KEY.pem")
    p.add_argument(
        "--ca", required=True, type=Path, metavar="CLIENT_CA.pem", help="CA of the clients"
    )
    p.add_argument("--name", default="va-agent", help="name shown in logs")
    p.add_argument("--config", type=Path, help="TOML file layered over conf/default.toml")


def validation_config(settings: Settings) -> ValidationConfig:
    acme = settings.acme
    return ValidationConfig(
        http01_port=acme.http01_port,
        tlsalpn01_port=acme.tlsalpn01_port,
        dns_resolvers=tuple(acme.dns_resolvers),
        deny_networks=tuple(acme.validation_deny),
        timeout=acme.validation_timeout_seconds,
    )


async def serve_agent(
    host: str, port: int, context: ssl.SSLContext, config: ValidationConfig, name: str
) -> None:
    runner = web.AppRunner(create_agent_app(config, name=name), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        log.info("va_agent_listening", listen=f"{host}:{port}", name=name)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("va_agent_stopping", name=name)
    finally:
        await runner.cleanup()


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        host, port = parse_hostport(args.listen)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    try:
        context = agent_ssl_context(args.cert, args.key, args.ca)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the agent's TLS files: {exc}") from None
    config = validation_config(settings)
    try:
        asyncio.run(serve_agent(host, port, context, config, args.name))
    except OSError as exc:
        print(f"certyard: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    return 0
