"""``civicchat serve CONFIG`` (the web service, workers included), ``civicchat worker CONFIG``
and ``civicchat telegram-webhook CONFIG ACCOUNT`` (register the bot's webhook with Telegram).

Also runnable without the CLI registry: ``python -m civicchat.cli.serve serve CONFIG``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from civicchat.cli import run
from civicchat.cli._options import add_command
from civicchat.exceptions import ConfigError

T = TypeVar("T")

__all__ = ["main", "register"]

logger = logging.getLogger("civicchat.service")


def register(subparsers: Any) -> None:
    """Add ``serve``, ``worker`` and ``telegram-webhook`` to the ``civicchat`` command."""
    serve = add_command(
        subparsers,
        "serve",
        help="run the web service (webhooks, web chat, console, workers)",
        examples=[
            "civicchat serve examples/mataro/config.yaml",
            "civicchat serve /etc/civicchat/mataro/config.yaml --port 8001 --workers 2 --no-workers",
        ],
    )
    _config_argument(serve)
    serve.add_argument("--host", help="listen address (default: the config's, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: the config's, 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="web processes (N > 1 needs PostgreSQL; default 1)",
    )
    serve.add_argument(
        "--no-workers",
        action="store_true",
        help="do not run the background workers here (run `civicchat worker CONFIG` instead)",
    )
    _log_level_argument(serve)
    serve.set_defaults(handler=run_serve)

    worker = add_command(
        subparsers,
        "worker",
        help="run only the background workers, until Ctrl+C or SIGTERM",
        examples=["civicchat worker /etc/civicchat/mataro/config.yaml"],
    )
    _config_argument(worker)
    _log_level_argument(worker)
    worker.set_defaults(handler=run_worker)

    hook = add_command(
        subparsers,
        "telegram-webhook",
        help="register the service's webhook URL with a Telegram bot (setWebhook)",
        description="Register <server.public_url>/webhooks/telegram/ACCOUNT, with the account's "
        "secret token,\nas the Telegram bot's webhook.",
        examples=["civicchat telegram-webhook examples/mataro/config.yaml mataro-tg"],
    )
    _config_argument(hook)
    hook.add_argument(
        "account", metavar="ACCOUNT", help="the Telegram account's name in the configuration"
    )
    hook.add_argument(
        "--drop-pending", action="store_true", help="discard updates Telegram still holds"
    )
    hook.set_defaults(handler=run_telegram_webhook)


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="the service configuration (YAML)")


def _log_level_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="the least important log records shown (default: info)",
    )


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request URL at INFO, and Telegram's URLs hold the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run_serve(args: argparse.Namespace) -> int:
    """Start uvicorn with the service app."""
    import uvicorn

    from civicchat.service.app import create_app, tune_gc
    from civicchat.service.config import export_for_processes, load_config

    _logging(args.log_level)
    config = load_config(args.config)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    base = f"http://{host}:{port}"
    chats = [a.name for a in config.enabled_accounts if a.channel == "webchat"]
    print(f"civicchat: serving on {base}", flush=True)
    for name in chats:
        print(f"  web chat: {base}/chat/{name}", flush=True)
    print(f"  console:  {base}/console", flush=True)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": config.server.access_log,
        "log_level": args.log_level,
        "timeout_graceful_shutdown": 3,
        "proxy_headers": True,
        "forwarded_allow_ips": ",".join(config.server.forwarded_allow_ips),
    }
    if args.workers > 1:
        from civicchat.service.app import prepare_first_start

        if config.is_sqlite:
            raise ConfigError(
                "--workers above 1 needs PostgreSQL (live updates for the console and the web "
                "chat cross processes through LISTEN/NOTIFY); SQLite serves one process"
            )
        # Migrations and demo operators once, here, rather than racing in every process.
        asyncio.run(prepare_first_start(config))
        # Each process builds its own app from the same file (given through the environment).
        # Every process must sign console sessions with the same key.
        secret = config.secret_key or secrets.token_urlsafe(48)
        export_for_processes(args.config, workers=not args.no_workers, secret_key=secret)
        uvicorn.run(
            "civicchat.service.app:app_from_environment",
            factory=True,
            workers=args.workers,
            **common,
        )
        return 0
    app = create_app(config, workers=not args.no_workers)
    tune_gc()
    uvicorn.run(app, **common)
    return 0


def run_worker(args: argparse.Namespace) -> int:
    """Run the workers of CONFIG until SIGINT/SIGTERM."""
    from civicchat.service.config import load_config

    _logging(args.log_level)
    run_loop(_worker(load_config(args.config)))
    return 0


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (``uvicorn[standard]`` brings it), as
    ``serve`` runs under uvicorn; else on asyncio's own loop. A worker process spends a good part
    of its time in the loop's own machinery (benchmarks/pipeline.py: about 8 % less CPU a
    message on uvloop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _worker(config: Any) -> None:
    from civicchat.service.app import create_app, tune_gc

    app = create_app(config, workers=True)
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with app.router.lifespan_context(app):
        logger.info("workers running; stop with Ctrl+C")
        await stop.wait()


def run_telegram_webhook(args: argparse.Namespace) -> int:
    """Call setWebhook with ``<public_url>/webhooks/telegram/<account>`` and the secret token."""
    from civicchat.service.config import load_config

    config = load_config(args.config)
    account = next((a for a in config.accounts if a.name == args.account), None)
    if account is None or account.channel != "telegram":
        raise ConfigError(f"no Telegram account named {args.account!r} in {args.config}")
    if not account.enabled:
        raise ConfigError(f"account {account.name} is disabled: set {', '.join(account.missing)}")
    public = config.server.public_url
    if not public or not public.startswith("https://"):
        raise ConfigError("server.public_url must be the service's https address")
    url = f"{public.rstrip('/')}/webhooks/telegram/{account.name}"
    asyncio.run(_set_telegram_webhook(account, url, args.drop_pending))
    print(f"Telegram now sends {account.name}'s updates to {url}")
    return 0


async def _set_telegram_webhook(account: Any, url: str, drop_pending: bool) -> None:
    import httpx

    from civicchat.channels._http import provider_client
    from civicchat.channels.telegram import TelegramChannel
    from civicchat.clock import SystemClock
    from civicchat.service.runtime import build_channel

    # The service's client (proxies from the environment); one call: 15 s for each step.
    async with provider_client(timeout=httpx.Timeout(15.0)) as client:
        channel = build_channel(account, client=client, clock=SystemClock())
        assert isinstance(channel, TelegramChannel)  # the command checked the account's channel
        await channel.set_webhook(url, drop_pending_updates=drop_pending)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``serve``, ``worker`` or ``telegram-webhook`` without the ``civicchat`` command's
    registry (errors as ``civicchat`` reports them: one line, status 2)."""
    parser = argparse.ArgumentParser(
        prog="civicchat",
        description="The service's commands (`civicchat --help` lists all of them).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(sub)
    return run(parser, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
