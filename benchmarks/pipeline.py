"""Signed WhatsApp webhooks against the service and against a bare Starlette endpoint.

Same load generator, same run: first the bare endpoint (reads the body, answers 200), then the
service (signature check, parse, durable inbox commit, then the inbox processor answers the
keyword through the outbox to a local fake Graph API). For each offered rate: requests a second
achieved, p50/p99 of the webhook answer, the ratio to the bare endpoint, and the time from the
webhook to the reply reaching the fake Graph API. A closed-loop run (64 connections as fast as
they go) gives each target's ceiling.

    python benchmarks/pipeline.py                      # default: about 1-2 minutes
    python benchmarks/pipeline.py --processes 1,2,1+1 --rates 50,100,200,400 --duration 10
    python benchmarks/pipeline.py --backends postgres --pg-url postgresql://postgres@127.0.0.1/test

Goal (issue #7): on PostgreSQL, >= 40 % of the bare endpoint's throughput, and reply p99 under
250 ms at 200 messages a second. Absolute numbers move +-30 % between runs on shared machines;
quote the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from civicchat.channels.whatsapp import sign

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MATARO = REPO / "examples" / "mataro"
SECRET = "bench-app-secret"
NUMBER_ID = "100000000000001"
TEXT = "horari bus"

# ----------------------------------------------------------------------------- servers


async def _bare(request: Request) -> Response:
    await request.body()
    return PlainTextResponse("OK")


bare_app = Starlette(routes=[Route("/webhooks/whatsapp/{account}", _bare, methods=["POST"])])
"""The baseline: reads the body and answers 200 (``uvicorn pipeline:bare_app``)."""

_arrivals: dict[str, float] = {}
_count = 0
# The real Graph API answers in ~0.1-0.3 s, so a sender keeps dozens of requests in flight;
# --graph-delay makes the fake provider as slow (the default answers at once).
_GRAPH_DELAY = float(os.environ.get("CIVICCHAT_BENCH_GRAPH_DELAY", "0"))


async def _graph_send(request: Request) -> Response:
    global _count
    body = await request.json()
    if _GRAPH_DELAY:
        await asyncio.sleep(_GRAPH_DELAY)
    _arrivals.setdefault(str(body.get("to")), time.time())
    _count += 1
    return JSONResponse({"messages": [{"id": f"wamid.bench.{_count}"}]})


async def _graph_stats(_request: Request) -> Response:
    return JSONResponse({"arrivals": _arrivals, "count": _count})


async def _graph_reset(_request: Request) -> Response:
    global _count
    _arrivals.clear()
    _count = 0
    return PlainTextResponse("reset")


fake_graph_app = Starlette(
    routes=[
        Route("/{version}/{number}/messages", _graph_send, methods=["POST"]),
        Route("/stats", _graph_stats, methods=["GET"]),
        Route("/reset", _graph_reset, methods=["POST"]),
    ]
)
"""The fake Graph API: records when the first message to each recipient arrived."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _uvicorn(app: str, port: int, workers: int = 1) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", app, "--app-dir", str(HERE), "--port", str(port),
            "--workers", str(workers), "--no-access-log", "--log-level", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_up(url: str, proc: subprocess.Popen[bytes], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid`` and its children (Linux only).

    On a shared, busy machine wall-clock latencies swing widely; the CPU the service spends per
    message is the steadier figure to compare two versions with.
    """
    tick = os.sysconf("SC_CLK_TCK")

    def one(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    total = one(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                total += one(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


# ----------------------------------------------------------------------------- load


@dataclass
class Result:
    offered: float | None  # None: closed loop
    sent: int
    ok: int
    elapsed: float
    latencies: list[float]
    reply_latencies: list[float]
    cpu_ms_per_message: float | None = None
    # Closed loop with replies: seconds after the burst until every accepted webhook was
    # answered, and the service's CPU a message over burst + drain.
    drain: float | None = None
    cpu_ms_end_to_end: float | None = None

    @property
    def end_to_end(self) -> float:
        """Messages answered a second over the burst and its drain."""
        return self.ok / (self.elapsed + (self.drain or 0.0)) if self.elapsed else 0.0

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def pct(self, values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class _StaleConnection(ConnectionError):
    """A kept-alive connection the server had closed: nothing was processed."""


class RawClient:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams.

    httpx's connection pool costs more per request than the bare endpoint itself at high
    concurrency; this client keeps the load generator out of the measurement.
    """

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.host = parsed.host
        self.port = parsed.port or 80
        self.path = parsed.raw_path.decode()
        self._idle: list[tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], float]] = []

    # uvicorn closes a connection idle for 5 s (its keep-alive timeout): older ones are not
    # reused, and a reused one found closed before any answer is replaced once (a webhook is
    # idempotent by message id; the providers retry too).
    IDLE_REUSE = 4.0

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            return await self._post(body, headers, reuse=True)
        except _StaleConnection:
            return await self._post(body, headers, reuse=False)

    async def _post(self, body: bytes, headers: dict[str, str], *, reuse: bool) -> int:
        conn = None
        now = time.monotonic()
        while reuse and self._idle:
            candidate, since = self._idle.pop()
            if now - since < self.IDLE_REUSE:
                conn = candidate
                break
            candidate[1].close()
        reused = conn is not None
        if conn is None:
            conn = await asyncio.open_connection(self.host, self.port)
        reader, writer = conn
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        try:
            writer.write(
                f"POST {self.path} HTTP/1.1\r\nhost: {self.host}\r\n{head}"
                f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status_line = await reader.readline()
            if not status_line:
                raise _StaleConnection("closed") if reused else ConnectionError("closed")
            status = int(status_line.split()[1])
            length = 0
            close = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            if length:
                await reader.readexactly(length)
        except Exception as exc:
            writer.close()
            if reused and isinstance(exc, ConnectionResetError):
                raise _StaleConnection(str(exc)) from exc
            raise
        if close:
            writer.close()
        else:
            self._idle.append((conn, time.monotonic()))
        return status

    async def aclose(self) -> None:
        for (_reader, writer), _since in self._idle:
            writer.close()
        self._idle.clear()


def _body(sender: str, ts: int) -> bytes:
    import json

    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "34937000010", "phone_number_id": NUMBER_ID},
            "contacts": [{"profile": {"name": "Bench"}, "wa_id": sender}],
            "messages": [{"from": sender, "id": f"wamid.{uuid.uuid4().hex}", "timestamp": str(ts),
                          "type": "text", "text": {"body": TEXT}}],
        }}]}],
    }  # fmt: skip
    return json.dumps(payload).encode()


def _requests(n: int) -> list[tuple[str, bytes, dict[str, str]]]:
    ts = int(time.time())
    run = uuid.uuid4().int % 10**6
    out = []
    for i in range(n):
        sender = f"34{run:06d}{i:05d}"[:15]
        body = _body(sender, ts)
        out.append(
            (
                sender,
                body,
                {"content-type": "application/json", "x-hub-signature-256": sign(body, SECRET)},
            )
        )
    return out


async def open_loop(url: str, rate: float, duration: float) -> tuple[Result, dict[str, float]]:
    """Send at ``rate`` a second for ``duration`` seconds, whatever the answers take."""
    n = max(1, int(rate * duration))
    reqs = _requests(n)
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    ok = 0
    client = RawClient(url)

    async def one(sender: str, body: bytes, headers: dict[str, str]) -> None:
        nonlocal ok
        started = time.perf_counter()
        sent_at[sender] = time.time()
        try:
            status = await client.post(body, headers)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            return
        latencies.append(time.perf_counter() - started)
        ok += status == 200

    start = time.perf_counter()
    tasks = []
    for i, (sender, body, headers) in enumerate(reqs):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(sender, body, headers)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await client.aclose()
    return Result(rate, n, ok, elapsed, latencies, []), sent_at


async def closed_loop(url: str, connections: int, duration: float) -> Result:
    """``connections`` clients sending back to back for ``duration`` seconds."""
    reqs = _requests(int(duration * 20000))
    latencies: list[float] = []
    ok = 0
    index = 0
    client = RawClient(url)
    start = time.perf_counter()
    deadline = start + duration

    async def worker() -> None:
        nonlocal ok, index
        while time.perf_counter() < deadline and index < len(reqs):
            _sender, body, headers = reqs[index]
            index += 1
            t0 = time.perf_counter()
            try:
                status = await client.post(body, headers)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                continue
            latencies.append(time.perf_counter() - t0)
            ok += status == 200

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    await client.aclose()
    return Result(None, index, ok, elapsed, latencies, [])


async def replies(graph: str, sent_at: dict[str, float], wait: float) -> list[float]:
    """Seconds from each webhook to its first reply at the fake Graph API."""
    deadline = time.monotonic() + wait
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            arrivals = (await client.get(f"{graph}/stats")).json()["arrivals"]
            done = [s for s in sent_at if s in arrivals]
            if len(done) == len(sent_at) or time.monotonic() > deadline:
                return [arrivals[s] - sent_at[s] for s in done]
            await asyncio.sleep(0.2)


async def sends_per_reply(graph: str, wait: float = 5.0) -> int:
    """Sends the fake Graph API got for each recipient once the replies stop coming: a reply may
    be several messages (``TEXT``'s is a text and a PDF)."""
    deadline = time.monotonic() + wait
    last = -1
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            stats = (await client.get(f"{graph}/stats")).json()
            if stats["count"] == last or time.monotonic() > deadline:
                return max(1, round(stats["count"] / len(stats["arrivals"]))) if last > 0 else 1
            last = stats["count"]
            await asyncio.sleep(0.5)


async def drained(graph: str, expected: int, wait: float) -> float:
    """Seconds until the fake Graph API has received ``expected`` sends (at most ``wait``)."""
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=10) as client:
        while time.perf_counter() - started < wait:
            if (await client.get(f"{graph}/stats")).json()["count"] >= expected:
                break
            await asyncio.sleep(0.1)
    return time.perf_counter() - started


# ----------------------------------------------------------------------------- targets


def _service_config(directory: Path, graph: str, db_url: str, schema: str | None) -> Path:
    schema_line = f"database_schema: {schema}" if schema else ""
    # The workers are woken when this process accepts events or writes replies; the idle poll
    # only catches work written by other processes. Older versions polled: keep them fast.
    idle = os.environ.get("CIVICCHAT_BENCH_IDLE", "0.2")
    # Inbox and outbox workers per process: the service's defaults unless given.
    counts = "".join(
        f"{kind}: {os.environ[var]}, "
        for kind, var in (("inbox", "CIVICCHAT_BENCH_INBOX"), ("outbox", "CIVICCHAT_BENCH_OUTBOX"))
        if os.environ.get(var)
    )
    text = f"""
database_url: "{db_url}"
{schema_line}
demo_operators: false
workers: {{{counts}media: 0, idle_seconds: {idle}}}
accounts:
  - name: bench-wa
    channel: whatsapp
    catalog: {MATARO / "catalog.yaml"}
    office_hours: {MATARO / "hours.yaml"}
    templates: {MATARO / "templates.yaml"}
    first_contact_notice: false
    whatsapp:
      phone_number_id: "{NUMBER_ID}"
      access_token: "token"
      app_secret: "{SECRET}"
      verify_token: "verify"
      api_base_url: "{graph}"
      messages_per_second: 1000
"""
    path = directory / "bench.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def _prepare_postgres(url: str, schema: str) -> None:
    from sqlalchemy import text

    from civicchat.storage.engine import create_engine, upgrade

    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    await engine.dispose()
    engine = create_engine(url, schema=schema)
    await upgrade(engine)
    await engine.dispose()


async def _drop_postgres(url: str, schema: str) -> None:
    from sqlalchemy import text

    from civicchat.storage.engine import create_engine

    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    await engine.dispose()


def _start_service(
    config: Path, port: int, topology: str, worker_nice: int = 0, source: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    """``N``: ``serve --workers N`` (each process answers webhooks and runs workers); ``N+M``:
    ``serve --workers N --no-workers`` and ``M`` separate ``civicchat worker`` processes, at
    ``worker_nice`` (as docs/deployment.md's systemd unit runs them). ``source``: run the civicchat
    package found there (another version's ``src``) instead of the installed one."""
    web, _, separate = topology.partition("+")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATARO_", "CIVICCHAT_"))}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    serve = [
        sys.executable, "-m", "civicchat.cli.serve", "serve", str(config), "--port",
        str(port), "--workers", web, "--log-level", "warning",
    ]  # fmt: skip
    if separate:
        serve.append("--no-workers")
    commands = [serve]
    worker = [sys.executable, "-m", "civicchat.cli.serve", "worker", str(config)]
    commands += [[*worker, "--log-level", "warning"] for _ in range(int(separate or 0))]
    procs = [
        subprocess.Popen(
            command,
            cwd=config.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in commands
    ]
    for proc in procs[1:]:  # the separate worker processes
        os.setpriority(os.PRIO_PROCESS, proc.pid, worker_nice)
    return procs


async def measure(
    name: str,
    url: str,
    graph: str | None,
    rates: Sequence[float],
    duration: float,
    pids: Sequence[int] = (),
    warmup: float = 0.0,
) -> list[Result]:
    results = []
    per_reply = 1
    if pids and warmup > 0:
        # A service just started opens its pooled connections and prepares its statements on
        # the first messages: not what a running service does with the next ones.
        await open_loop(url, 50, warmup)
        await asyncio.sleep(1.0)
    for rate in rates:
        if graph:
            async with httpx.AsyncClient() as client:
                await client.post(f"{graph}/reset")
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        result, sent_at = await open_loop(url, rate, duration)
        if graph:
            result.reply_latencies = await replies(graph, sent_at, wait=15)
        if pids and result.reply_latencies:
            # Webhook, processing and sending of every message that was answered.
            used = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            result.cpu_ms_per_message = used * 1000 / len(result.reply_latencies)
        if graph and result.reply_latencies:
            per_reply = await sends_per_reply(graph)
        results.append(result)
        print(_line(name, result), flush=True)
    if graph:
        async with httpx.AsyncClient() as client:
            await client.post(f"{graph}/reset")
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    ceiling = await closed_loop(url, 64, duration)
    if pids and ceiling.ok:
        # Every process of the service: the web side's cost a webhook, plus what the workers
        # did on the backlog meanwhile (little: they step aside while webhooks queue up).
        used = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        ceiling.cpu_ms_per_message = used * 1000 / ceiling.ok
    if graph and ceiling.ok:
        # The backlog the burst left: how long until every accepted webhook was answered.
        ceiling.drain = await drained(graph, ceiling.ok * per_reply, wait=300)
        used = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        ceiling.cpu_ms_end_to_end = used * 1000 / ceiling.ok
    results.append(ceiling)
    print(_line(name, ceiling), flush=True)
    if ceiling.drain is not None:
        print(
            f"{'':<26}  then {ceiling.drain:.1f} s until all {ceiling.ok} were answered "
            f"({per_reply} send(s) a reply): "
            f"{ceiling.end_to_end:.0f} messages a second end to end, service CPU "
            f"{ceiling.cpu_ms_end_to_end or 0:.2f} ms/message",
            flush=True,
        )
    return results


def _line(name: str, r: Result) -> str:
    rate = f"{r.offered:>6.0f}/s" if r.offered is not None else "   max  "
    reply = ""
    if r.reply_latencies:
        got = len(r.reply_latencies)
        reply = (
            f"  reply p50 {r.pct(r.reply_latencies, 0.5):7.1f} ms"
            f" p99 {r.pct(r.reply_latencies, 0.99):7.1f} ms ({got}/{r.sent})"
        )
    if r.cpu_ms_per_message is not None:
        unit = "message" if r.offered is not None else "webhook"
        reply += f"  service CPU {r.cpu_ms_per_message:5.2f} ms/{unit}"
    return (
        f"{name:<26} {rate} -> {r.rps:8.1f} req/s  p50 {r.pct(r.latencies, 0.5):6.1f} ms"
        f"  p99 {r.pct(r.latencies, 0.99):7.1f} ms  ok {r.ok}/{r.sent}{reply}"
    )


def _web_processes(topology: str) -> int:
    return int(topology.partition("+")[0])


def _describe(topology: str) -> str:
    web, _, separate = topology.partition("+")
    return f"{web} web + {separate} worker" if separate else f"x{web}"


async def _measure_service(
    args: argparse.Namespace,
    backend: str,
    topology: str,
    graph: str,
    rates: Sequence[float],
    name: str,
    source: Path | None,
    procs: list[subprocess.Popen[bytes]],
) -> list[Result] | None:
    """Start one service layout on a fresh database, measure it, stop it (None: no PostgreSQL)."""
    with tempfile.TemporaryDirectory(prefix="civicchat-bench-") as tmp:
        schema = None
        if backend == "postgres":
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            try:
                await _prepare_postgres(args.pg_url, schema)
            except Exception as exc:
                print(f"postgres skipped: {type(exc).__name__}: {exc}", flush=True)
                return None
            db_url = args.pg_url
        else:
            db_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        config = _service_config(Path(tmp), graph, db_url, schema)
        port = free_port()
        service = _start_service(config, port, topology, args.worker_nice, source)
        procs += service
        try:
            _wait_up(f"http://127.0.0.1:{port}/healthz", service[0])
            url = f"http://127.0.0.1:{port}/webhooks/whatsapp/bench-wa"
            # N+0: web processes only, nothing answers: no replies to wait for.
            answered = not topology.endswith("+0")
            return await measure(
                name,
                url,
                graph if answered else None,
                rates,
                args.duration,
                [p.pid for p in service],
                warmup=args.warmup,
            )
        finally:
            for proc in service:
                _stop(proc)
            if schema:
                await _drop_postgres(args.pg_url, schema)


async def run(args: argparse.Namespace) -> int:
    rates = [float(r) for r in args.rates.split(",")]
    topologies = args.processes.split(",")
    os.environ["CIVICCHAT_BENCH_GRAPH_DELAY"] = str(args.graph_delay)
    for var, value in (
        ("CIVICCHAT_BENCH_INBOX", args.inbox),
        ("CIVICCHAT_BENCH_OUTBOX", args.outbox),
    ):
        if value is not None:
            os.environ[var] = str(value)
    graph_port = free_port()
    graph_proc = _uvicorn("pipeline:fake_graph_app", graph_port)
    graph = f"http://127.0.0.1:{graph_port}"
    procs = [graph_proc]
    summary: list[str] = []
    try:
        _wait_up(f"{graph}/stats", graph_proc)
        bare_ceiling: dict[int, float] = {}
        for n in sorted({_web_processes(t) for t in topologies} | {1}):
            port = free_port()
            proc = _uvicorn("pipeline:bare_app", port, n)
            procs.append(proc)
            url = f"http://127.0.0.1:{port}/webhooks/whatsapp/bench-wa"
            _wait_up(f"http://127.0.0.1:{port}/", proc)
            results = await measure(f"bare x{n}", url, None, rates, args.duration)
            bare_ceiling[n] = results[-1].rps
            _stop(proc)
        versions: list[tuple[str, Path | None]] = [("", None)]
        if args.baseline_src:
            versions.insert(0, ("baseline ", Path(args.baseline_src)))
        for backend in args.backends.split(","):
            for topology in topologies:
                if backend == "sqlite" and topology != "1":
                    continue  # several processes need PostgreSQL (live events across processes)
                ceilings: dict[str, Result] = {}
                for label, source in versions:
                    name = f"{label}service {backend} {_describe(topology)}"
                    results = await _measure_service(
                        args, backend, topology, graph, rates, name, source, procs
                    )
                    if results is None:
                        break
                    ceilings[label] = results[-1]
                    web = _web_processes(topology)
                    bare = bare_ceiling[web]
                    ratio = results[-1].rps / bare if bare else 0.0
                    at200 = next((r for r in results if r.offered == 200), None)
                    p99 = at200.pct(at200.reply_latencies, 0.99) if at200 else float("nan")
                    cpu = at200.cpu_ms_per_message if at200 else None
                    drain = results[-1].drain
                    summary.append(
                        f"{name}: {ratio:5.1%} of bare x{web} throughput "
                        f"({results[-1].rps:.0f} vs {bare:.0f} req/s); "
                        f"reply p99 at 200/s: {p99:.0f} ms"
                        + (f"; service CPU {cpu:.1f} ms/message" if cpu is not None else "")
                        + (
                            f"; the burst answered in full {drain:.0f} s later "
                            f"({results[-1].end_to_end:.0f} messages/s end to end)"
                            if drain is not None
                            else ""
                        )
                    )
                if len(ceilings) == 2:
                    old, new = ceilings["baseline "], ceilings[""]
                    summary.append(
                        f"  -> {new.rps / old.rps if old.rps else 0:.2f} x the baseline's webhooks "
                        f"a second; CPU a webhook {old.cpu_ms_per_message or 0:.3f} -> "
                        f"{new.cpu_ms_per_message or 0:.3f} ms"
                    )
    finally:
        for proc in procs:
            if proc.poll() is None:
                _stop(proc)
    print("\nsummary (goal on PostgreSQL: >= 40 % of bare, reply p99 < 250 ms at 200/s)")
    for line in summary:
        print("  " + line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200", help="offered rates, requests a second")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per rate")
    parser.add_argument(
        "--processes",
        default="1",
        help="process layouts to try: N (serve --workers N, each process answers webhooks and "
        "runs workers) or N+M (N web processes with --no-workers and M `civicchat worker` "
        "processes; N+0: the web side alone, no replies), e.g. 1,2,1+1",
    )
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "CIVICCHAT_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--graph-delay",
        type=float,
        default=0.0,
        help="seconds the fake Graph API takes to answer a send (the real one: ~0.1-0.3)",
    )
    parser.add_argument(
        "--inbox", type=int, help="inbox workers per process (default: the service's)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of webhooks at 50/s sent to a service just started, not measured",
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="niceness of the separate worker processes of an N+M layout (docs/deployment.md "
        "runs them at 10: the web processes answer the providers first)",
    )
    parser.add_argument(
        "--outbox", type=int, help="outbox workers per process (default: the service's)"
    )
    parser.add_argument(
        "--baseline-src",
        help="another version's src directory (e.g. from `git worktree add /tmp/old <rev>`): "
        "each layout runs with it first, then with this one, and the summary gives the ratio",
    )
    args = parser.parse_args(argv)
    if args.baseline_src:  # the service processes run elsewhere (cwd): an absolute path
        args.baseline_src = str(Path(args.baseline_src).resolve())
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
