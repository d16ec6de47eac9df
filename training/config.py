"""Training configuration: one validated model, read from TOML (or YAML) and written by `tune`.

pydantic validates the file once, with errors that name the field; everything has a default, so
`mallrec train` runs with no config at all.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from service.errors import MallrecError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> float | None:
    """'30d', '12h', '90m', '45s', '2w' or a number of seconds -> seconds; 'off'/None -> None."""
    # YAML reads an unquoted `off`/`no` as false: for a duration that can only mean "off".
    if value is None or value is False:
        return None
    if isinstance(value, str) and value.strip().lower() in ("off", "none", ""):
        return None
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30d', '12h' or a number of seconds")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return float(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhdw])\s*", str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration: use e.g. '30d', '12h', '90m', '45s'")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "off"
    for unit in ("w", "d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float | None, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventWeights(_Strict):
    """Confidence an event adds to a member-item pair (before time decay)."""

    view: float = Field(1.0, ge=0)
    click: float = Field(2.0, ge=0)
    fav: float = Field(4.0, ge=0)
    cart: float = Field(6.0, ge=0)
    purchase: float = Field(10.0, ge=0)

    def as_array(self) -> list[float]:
        from service.model_bundle import EVENT_TYPES

        return [getattr(self, e) for e in EVENT_TYPES]


class Weighting(_Strict):
    """How events become the confidence matrix ALS factorises."""

    events: EventWeights = EventWeights()
    # Time decay: an event loses half its weight every `half_life`. "member" measures age from the
    # member's own latest event (suits data whose clock is an order, like amazon-beauty); "global"
    # from the newest event in the data.
    half_life: Duration = 30 * 86400.0
    decay_from: Literal["global", "member"] = "global"
    # Member vectors solved again, after the fit, from the same events with this (sharper) half-life
    # on the fixed item vectors: items learn from whole histories, a member leans on their latest
    # items. The service's fold-in uses it too. "off" = the vectors from the fit.
    member_half_life: Duration = None
    # log1p squashes heavy repeaters so one member's 200 views do not drown their purchase.
    log_scale: bool = True


class AlsConfig(_Strict):
    factors: int = Field(64, ge=2, le=1024)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(2.0, gt=0)
    iterations: int = Field(15, ge=1, le=200)
    # Catalogue attributes (category, brand, each tag) join the fit as pseudo-members holding their
    # items with this confidence: items that share attributes get close vectors (helps sparse items).
    attribute_weight: float = Field(0.0, ge=0)
    # With the re-ranker on, its first stage is ALS on the events before its cutoff. The final model
    # starts from those factors: `iterations - warm_iterations` sweeps before the cutoff, then
    # `warm_iterations` on all events, so training runs one fit's worth of sweeps, not two
    # (amazon-beauty: same or better HR@10 than a cold fit). 0 = fit the two from scratch.
    warm_iterations: int = Field(5, ge=0, le=200)
    seed: int = 42

    def staged(self) -> tuple[int, int]:
        """(sweeps before the re-ranker's cutoff, sweeps on all events from those factors).

        warm_iterations 0: (iterations, 0), the final model fits from scratch. A warm start that
        cannot save sweeps (warm_iterations >= iterations) still runs: the first stage keeps its
        full fit.
        """
        w = self.warm_iterations
        return (self.iterations - w if 0 < w < self.iterations else self.iterations), w


class PopularityConfig(_Strict):
    half_life: Duration = 7 * 86400.0  # global popularity decays slowly
    trending_window: Duration = 86400.0  # "recent" for trending
    trending_prior: float = Field(5.0, ge=0)  # smooths growth ratios of rarely seen items


class NeighboursConfig(_Strict):
    k: int = Field(50, ge=1, le=500)


class IndexConfig(_Strict):
    exact_below: int = Field(100_000, ge=1)  # catalogues smaller than this get an exact index
    kind: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    nprobe: int = Field(0, ge=0)  # 0 = pick from the number of lists
    recall_sample: int = Field(1000, ge=10)


class InputConfig(_Strict):
    max_bad_share: float = Field(0.01, ge=0, le=1)  # more bad rows than this fails the run


class RerankerConfig(_Strict):
    """The learned re-ranker (training/reranker.py): first stage fitted before a cutoff, labels after."""

    enabled: bool = True
    trees: int = Field(100, ge=1, le=2000)
    learning_rate: float = Field(0.05, gt=0, le=1)
    leaves: int = Field(15, ge=2, le=1024)  # 31 scored the same offline and costs ~1.5x at serving
    min_data_in_leaf: int = Field(50, ge=1)
    candidates: int = Field(200, ge=10, le=2000)  # per member, as a slot's blended list
    negatives: int = Field(50, ge=0)  # unlabelled candidates kept per training member (0 = all)
    # Where the labels come from: "time" = events after a global cutoff (real clocks); "last" = each
    # member's last event (order-only clocks such as amazon-beauty's positions); "random" = one
    # seeded random item of each member's (no clock: file order is not taken for time); "auto" =
    # "time" unless it leaves fewer than min_groups labelled members, then "last". Data whose events
    # all carry one time gets "random" whatever is asked (one line says so; the manifest says which).
    label_split: Literal["auto", "time", "last", "random"] = "auto"
    label_share: float = Field(0.2, gt=0, lt=1)  # share of the time span after the cutoff ("time")
    label_window: Duration = None  # an explicit window instead of label_share, e.g. "7d"
    min_groups: int = Field(50, ge=1)  # fewer labelled members than this: no re-ranker (noted)
    # The gate (training/rerank_gate.py): this share of the sampled members is held out of training,
    # and the re-ranker ships only if its NDCG@10 and HR@10 on them are each >= the first stage's
    # x (1 - gate_tolerance). Refused: the bundle has no re-ranker and the run says why.
    gate_share: float = Field(0.2, ge=0.05, le=0.5)
    gate_tolerance: float = Field(0.02, ge=0, lt=1)
    # Members sampled for training (bounds time and memory; the gate's share is drawn beside them).
    # amazon-beauty, default ALS, rerank HR@10:
    # 1,500 -> 0.0631, 3,000 -> 0.0665, 5,000 -> 0.0708, 10,000 -> 0.0699 / 0.0720 (two seeds)
    max_groups: int = Field(5_000, ge=1)
    # Candidate sources and blend weights of the training pool (a "for you" slot). "liked" (RP3beta,
    # then fitted before the cutoff too) raised rerank HR@10 on both real data sets, amazon-beauty
    # 0.0700 -> 0.0817 and taobao-2h 0.0451 -> 0.0468 (docs/benchmarks.md); where it does not help,
    # the gate keeps the re-ranker from shipping worse.
    sources: dict[str, float] = {"als": 0.4, "liked": 0.1, "similar_recent": 0.2, "category_popular": 0.15,
                                 "trending": 0.1, "popular": 0.05}
    exclude_seen: bool = True  # candidates never include the member's own items (as `evaluate`)
    threads: int = Field(0, ge=0)  # LightGBM threads; 0 = all cores (`train`: one, beside the final ALS)
    seed: int = 42

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: dict[str, float]) -> dict[str, float]:
        known = ("als", "liked", "similar_recent", "category_popular", "trending", "popular")
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}: the trainer can make {list(known)}")
        if not any(w > 0 for w in value.values()) or any(w < 0 for w in value.values()):
            raise ValueError("source weights must be >= 0 with at least one > 0")
        return value


class ItemModelConfig(_Strict):
    """RP3beta, the item-to-item model beside ALS (training/rp3beta.py): a candidate source ("because
    you liked X") and a part of the blend."""

    enabled: bool = True
    k: int = Field(100, ge=1, le=1000)  # neighbours kept per item: the model, and what the service serves
    alpha: float = Field(0.3, gt=0, le=2)  # transition probabilities ** alpha (< 1 flattens heavy rows)
    beta: float = Field(0.2, ge=0, le=1)  # arrival divided by popularity ** beta (> 0 favours the long tail)
    blend: float = Field(0.7, ge=0, le=1)  # its share in the ALS blend (standardised scores)
    # The fit's cost is one multiply-add per item -> member -> item walk (the sum over members of their
    # items squared), a few million a second on one core; above this it is skipped with a note.
    max_paths: int = Field(1_000_000_000, ge=1)


class TrainConfig(_Strict):
    weighting: Weighting = Weighting()
    als: AlsConfig = AlsConfig()
    popularity: PopularityConfig = PopularityConfig()
    neighbours: NeighboursConfig = NeighboursConfig()
    index: IndexConfig = IndexConfig()
    input: InputConfig = InputConfig()
    reranker: RerankerConfig = RerankerConfig()
    item_model: ItemModelConfig = ItemModelConfig()
    # Share of ALS score vs popularity in the `als+popularity` blend (rank-based).
    blend_popularity: float = Field(0.1, ge=0, le=1)

    def to_toml(self, header: str = "") -> str:
        """The config as TOML; ``header``'s lines lead as comments (e.g. how `tune` found it)."""
        comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
        return comments + (comments and "\n") + dump_toml(self.model_dump(mode="json"))


class ConfigError(MallrecError):
    """A config file that cannot be used; the message names the file and the field."""


def load_config(path: str | Path | None) -> TrainConfig:
    if path is None:
        return TrainConfig()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from e
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from e
    except Exception as e:  # yaml.YAMLError carries the line in its message
        raise ConfigError(f"{path}: {e}") from e
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        lines = [f"{path}: {len(e.errors())} error(s) in the config"]
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from e


def dump_toml(data: dict[str, Any]) -> str:
    """Minimal TOML writer for our nested config (tables of scalars)."""
    out: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if v is None:
            return '"off"'
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def table(prefix: str, d: dict[str, Any]) -> None:
        flat = {k: v for k, v in d.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix and flat:
            out.append(f"\n[{prefix}]")
        for k, v in flat.items():
            out.append(f"{k} = {scalar(v)}")
        for k, v in nested.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    return "\n".join(out).lstrip() + "\n"
