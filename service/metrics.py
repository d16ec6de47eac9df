"""Prometheus metrics of the service, on their own registry so tests can build many apps."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from service.errors import MallrecError

_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._http: Any = None  # the metrics HTTP server, once serve() ran
        r = self.registry
        self.requests = Counter("mallrec_requests", "gRPC requests by method, slot and status code",
                                ["method", "slot", "code"], registry=r)
        self.latency = Histogram("mallrec_request_seconds", "Request latency by method and slot",
                                 ["method", "slot"], buckets=_LATENCY_BUCKETS, registry=r)
        self.degraded = Counter("mallrec_degraded_responses",
                                "Responses served with a part skipped (reason: state_store, rerank)",
                                ["reason"], registry=r)
        self.state_errors = Counter("mallrec_state_store_errors", "Online state store failures",
                                    ["op"], registry=r)
        self.served_dropped = Counter("mallrec_served_impressions_dropped",
                                      "Served impressions never written (Redis down; write-behind "
                                      "queue full or a flush failed)", registry=r)
        self.model = Info("mallrec_model", "The model bundle being served", registry=r)
        self.model_loaded_at = Gauge("mallrec_model_loaded_timestamp_seconds",
                                     "When the serving model went live", registry=r)
        self.reranker_ready = Gauge("mallrec_reranker_ready",
                                    "1 when the live bundle's re-ranker is loaded and can score", registry=r)
        self.reload_failures = Counter("mallrec_model_reload_failures",
                                       "Published bundles rejected at load", registry=r)
        self.events = Counter("mallrec_tracked_events", "Events TrackEvents stored (new, not resent)",
                              ["event"], registry=r)
        self.duplicate_events = Counter("mallrec_duplicate_events",
                                        "Events TrackEvents recognised as resends (same event id within "
                                        "a day) and did not store again", registry=r)

        self.undecodable = Counter("mallrec_undecodable_requests", "Requests whose body was not a valid "
                                   "message (answered INVALID_ARGUMENT)", ["method"], registry=r)
        self.shed = Counter("mallrec_shed_requests", "Requests refused at once with RESOURCE_EXHAUSTED "
                            "(reason: in_flight, deadline)", ["reason"], registry=r)
        self.redis_up = Gauge("mallrec_redis_up", "1 while the online state store (Redis) answers pings",
                              registry=r)
        # memory, CPU, open file descriptors (process_*), and the Python version (python_info)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def close(self) -> None:
        """Stop the HTTP endpoint (if serving)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def model_live(self, version: str, created_at: str = "") -> None:
        self.model.info({"version": version, "created_at": created_at})
        self.model_loaded_at.set_to_current_time()

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        try:
            self._http, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as e:
            raise MallrecError(f"--metrics-port {port}: cannot listen ({e.strerror})") from e
