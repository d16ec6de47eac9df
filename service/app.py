"""Composition root: the one place that builds and wires the service's parts.

    settings -> state store (Redis, or embedded Redis; it appends the event log's stream)
             -> model holder + bundle watcher (the model and its re-ranker, built in the reload thread)
             -> slot registry (built-in, or the rules file + rules watcher) -> Recommender (use cases)
             -> gRPC servicer + health + reflection -> metrics endpoint
             -> the event-log sink (stream -> Parquet), when this process runs it

Tests inject fakes here (``state=``, ``clock=``, ``registry=``) and get a real server on a free port;
``clock`` is also how tests move the service's day (frequency caps, pins' date ranges).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Gauge, Info

from service.api import handlers
from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.arm_models import ArmModels
from service.errors import MallrecError
from service.eventlog.sink import Sink, SinkMetrics
from service.grpc_api import RecommenderServicer
from service.metrics import Metrics
from service.model import ServingModel
from service.recommender import Recommender
from service.reload import BundleWatcher, Holder, RecentlyServed, RulesWatcher
from service.rerank.runtime import rerank_runtime
from service.rules.loader import LoadedRules
from service.settings import Settings
from service.slots import SlotRegistry, default_registry
from service.state.embedded import EmbeddedRedis
from service.state.port import StateStore
from service.state.redis_store import RedisStateStore
from service.validation import TrackLimits

log = logging.getLogger(__name__)
#: Health service names: "" SERVING while the server is up (liveness); SERVICE_NAME
#: (mallrec.v1.Recommender) SERVING once a model is loaded and it can recommend (readiness).
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
#: A second health service name: SERVING while TrackEvents can store events (Redis answers), so a
#: readiness probe can choose between "can recommend" (SERVICE_NAME) and "can take events".
EVENT_INTAKE = "mallrec.v1.EventIntake"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class App:
    """A built service; ``start()`` binds and serves, ``stop()`` drains and closes."""

    settings: Settings
    metrics: Metrics
    models: Holder[ServingModel]
    slots: Holder[SlotRegistry]
    state: StateStore
    recommender: Recommender
    watcher: BundleWatcher
    health: HealthServicer = field(default_factory=HealthServicer)
    server: grpc.aio.Server | None = None
    embedded: EmbeddedRedis | None = None
    rules_watcher: RulesWatcher | None = None
    sink: Sink | None = None  # the event-log sink, when this process runs it (`serve --log`)
    arm_models: ArmModels | None = None  # bundle versions experiment arms serve beside the live one
    port: int = 0
    _sink_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _sink_task: asyncio.Task[None] | None = None
    _monitor_task: asyncio.Task[None] | None = None

    @property
    def target(self) -> str:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::", "[::]") else self.settings.host
        return f"{host}:{self.port}"

    async def start(self) -> App:
        s = self.settings
        if s.metrics_port is not None:
            self.metrics.serve(s.metrics_port, s.metrics_host or s.host)
        await self.health.set("", NOT_SERVING)
        await self.health.set(SERVICE_NAME, NOT_SERVING)
        await self.health.set(EVENT_INTAKE, NOT_SERVING)
        if not await self._check_state_store():
            log.warning("the online state store (Redis) is unreachable: serving without recent behaviour, "
                        "and TrackEvents answers UNAVAILABLE until it is back (health: "
                        f"{EVENT_INTAKE} NOT_SERVING)", extra={"url": getattr(self.state, "safe_url", "")})
        await self.watcher.check()  # the current bundle, if there is one, before taking traffic
        if self.arm_models is not None and self.slots.current is not None:
            await self.arm_models.want(self.slots.current.model_versions())
        if self.models.current is None:
            log.warning("no model to serve yet: answering UNAVAILABLE until one is published",
                        extra={"models_dir": str(self.settings.models_dir)})
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", int(self.settings.reuse_port))])
        handlers.add_to_server(RecommenderServicer(self.recommender, self.metrics,
                                                   max_in_flight=s.max_in_flight,
                                                   min_time_left=s.min_time_left), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME], self.server)
        address = f"{s.host}:{s.port}"
        try:
            creds = tls_credentials(s)
            self.port = (self.server.add_secure_port(address, creds) if creds is not None
                         else self.server.add_insecure_port(address))
        except RuntimeError as e:
            raise MallrecError(f"cannot listen on {address} (port in use?): {e}") from e
        await self.server.start()
        await self.health.set("", SERVING)  # the process is up (liveness); the model is SERVICE_NAME's
        self.watcher.start()
        if self.rules_watcher is not None:
            self.rules_watcher.start()
        if self.sink is not None:
            self._sink_task = asyncio.get_running_loop().create_task(self.sink.run(self._sink_stop))
        self._monitor_task = asyncio.get_running_loop().create_task(self._monitor_state_store())
        if isinstance(self.state, RedisStateStore):
            await self._warn_without_persistence(self.state)
        registry = self.slots.current
        log.info("mallrec serving", extra={"address": self.target, "model": self.model_version,
                                           "slots": registry.names() if registry else [],
                                           "rules_version": registry.version if registry else None})
        return self

    @property
    def model_version(self) -> str | None:
        return self.models.current.version if self.models.current else None

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (load balancers stop sending), then let in-flight calls finish."""
        await self.health.enter_graceful_shutdown()
        if self._monitor_task is not None:
            self._monitor_task.cancel()
        if self.settings.drain_seconds and self.server is not None:
            await asyncio.sleep(self.settings.drain_seconds)
        await self.watcher.stop()
        if self.rules_watcher is not None:
            await self.rules_watcher.stop()
        if self.server is not None:
            await self.server.stop(self.settings.shutdown_grace if grace is None else grace)
        await self.recommender.drain()  # served items (and their log records) written to Redis
        if self._sink_task is not None:  # then the sink writes the stream up to now to Parquet
            self._sink_stop.set()
            await self._sink_task
        await self.state.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.close)
        await asyncio.to_thread(self.metrics.close)
        log.info("mallrec stopped")

    async def _check_state_store(self) -> bool:
        """Ping the state store: mallrec_redis_up and the event intake's health follow it (the
        recommendation service stays SERVING without it: it degrades, it does not fail)."""
        ping = getattr(self.state, "ping", None)
        up = True if ping is None else await ping()
        self.metrics.redis_up.set(int(up))
        await self.health.set(EVENT_INTAKE, SERVING if up else NOT_SERVING)
        return up

    async def _monitor_state_store(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            await self._check_state_store()

    async def _warn_without_persistence(self, state: RedisStateStore) -> None:
        persistence = await state.persistence()
        if persistence == "none":
            log.warning("Redis keeps nothing on disk (no AOF, no RDB snapshots): events TrackEvents "
                        "acknowledged are lost if Redis restarts before the sink writes them; turn on "
                        "appendonly", extra={"url": state.safe_url})

    async def serve_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        try:
            await stopping.wait()
            log.info("shutting down: health NOT_SERVING, draining")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        await self.stop()


def build(settings: Settings, *, state: StateStore | None = None, registry: SlotRegistry | None = None,
          clock: Callable[[], float] = time.time, metrics: Metrics | None = None) -> App:
    """Wire everything; nothing listens until ``await app.start()``."""
    metrics = metrics or Metrics()
    rules = None
    if registry is None and settings.rules_path is not None:
        from service.rules import load_rules

        # first, so a bad file stops the start before anything runs
        rules = load_rules(settings.rules_path, models_dir=settings.models_dir)
        registry = rules.registry
    embedded = None
    url = settings.redis_url
    if state is None:
        if url is None:
            embedded = EmbeddedRedis(settings.embedded_redis_file)
            url = embedded.url
        state = RedisStateStore(url, prefix=settings.redis_prefix, max_events=settings.max_events,
                                log_maxlen=settings.log_maxlen if settings.event_log else 0,
                                events_ttl=int(settings.events_ttl_days * 86400),
                                impressions_ttl=int(settings.impressions_ttl_days * 86400),
                                timeout=settings.redis_timeout, retry_after=settings.redis_retry_after,
                                open_after=settings.redis_open_after,
                                on_error=lambda op: metrics.state_errors.labels(op).inc(),
                                on_drop=metrics.served_dropped.inc)
    models: Holder[ServingModel] = Holder()
    slots = Holder(registry or default_registry())
    served_lately = RecentlyServed()  # a rules reload must not silently drop a slot in use

    async def on_failed(version: str, error: Exception) -> None:  # the live bundle's or an arm's
        metrics.reload_failures.inc()

    arm_models = ArmModels(settings.models_dir, load_model, on_failed=on_failed)
    rules_watcher = _rules_watcher(settings, rules, slots, models, state, metrics, served_lately,
                                   arm_models) if rules else None
    health = HealthServicer()

    async def on_loaded(model: ServingModel) -> None:
        # A full GC pass traverses every tracked object (the imports and the model: tens of ms that
        # stall every request in flight). Objects alive now stay alive, so they leave the collector's
        # reach; an old model is freed by reference counting when its last request ends (it has no
        # cycles: tests/unit/test_model_lifetime.py).
        gc.freeze()
        metrics.model_live(model.version, str(model.bundle.manifest.get("created_at", "")))
        metrics.reranker_ready.set(int(rerank_runtime(model).ready))
        await health.set(SERVICE_NAME, SERVING)

    watcher = BundleWatcher(settings.models_dir, models, interval=settings.reload_interval,
                            loader=load_model, on_loaded=on_loaded, on_failed=on_failed)
    recommender = Recommender(models, slots, state, max_count=settings.max_count,
                              record_served=settings.record_served, log_served=settings.event_log,
                              track_limits=TrackLimits(settings.max_track_events),
                              on_slot_served=served_lately.note, arm_models=arm_models.get, clock=clock)
    sink = None
    if settings.log_dir is not None:
        if url is None:
            raise MallrecError("--log needs the service's Redis (--redis-url, or the embedded one)")
        sink = Sink(url, settings.log_dir, prefix=settings.redis_prefix, lock_ttl=settings.sink_lock_seconds,
                    flush_seconds=settings.sink_flush_seconds, compact=settings.sink_compact,
                    metrics=SinkMetrics(metrics.registry))
    return App(settings=settings, metrics=metrics, models=models, slots=slots, state=state,
               recommender=recommender, watcher=watcher, health=health, embedded=embedded,
               rules_watcher=rules_watcher, sink=sink, arm_models=arm_models)


def tls_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS server credentials from the settings' PEM files (mutual TLS with a client CA), or None."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    pems = {}
    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(settings, name)
        if path is not None:
            try:
                pems[name] = Path(path).read_bytes()
            except OSError as e:
                raise MallrecError(f"--{name.replace('_', '-')} {path}: cannot read ({e.strerror})") from e
    ca = pems.get("tls_client_ca")
    return grpc.ssl_server_credentials([(pems["tls_key"], pems["tls_cert"])], root_certificates=ca,
                                       require_client_auth=ca is not None)


def load_model(path: Path) -> ServingModel:
    """The reload thread's work for one bundle: the ServingModel, then its re-ranker (the onnxruntime
    session and the feature context), so no request pays for either."""
    model = ServingModel.load(path)
    rerank_runtime(model)
    return model


def _rules_watcher(settings: Settings, first: LoadedRules, slots: Holder[SlotRegistry],
                   models: Holder[ServingModel], state: StateStore, metrics: Metrics,
                   served_lately: RecentlyServed, arm_models: ArmModels) -> RulesWatcher:
    """Watches the rules file: a changed valid file goes live (checked against the live model), an
    invalid one is logged with every problem and counted; the rules' metrics say which is live."""
    from service.rules import load_rules

    assert settings.rules_path is not None
    r = metrics.registry
    version = Info("mallrec_rules", "The exposure rules file being served", registry=r)
    loaded_at = Gauge("mallrec_rules_loaded_timestamp_seconds", "When the serving rules went live",
                      registry=r)
    failures = Counter("mallrec_rules_reload_failures", "Rules files rejected (invalid or unreadable)",
                       registry=r)

    def live(rules: LoadedRules) -> None:
        version.info({"version": rules.registry.version, "path": str(settings.rules_path)})
        loaded_at.set_to_current_time()
        days = rules.registry.impression_days  # a cap over N days needs N days of impressions kept
        if isinstance(state, RedisStateStore) and state.impressions_ttl < (days + 1) * 86400:
            state.impressions_ttl = (days + 1) * 86400
        for p in rules.problems:
            log.warning("rules file warning", extra={"problem": p.format(str(settings.rules_path))})

    async def on_loaded(rules: LoadedRules) -> None:
        live(rules)
        await arm_models.want(rules.registry.model_versions())

    async def on_failed(error: Exception) -> None:
        failures.inc()

    live(first)
    return RulesWatcher(settings.rules_path, slots,
                        lambda p: load_rules(p, model=models.current, models_dir=settings.models_dir),
                        interval=settings.reload_interval, digest=first.digest, on_loaded=on_loaded,
                        on_failed=on_failed, recently_served=served_lately)
