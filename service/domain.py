"""The words the service speaks, free of gRPC and Redis: requests, reasons, served items, traces.

The engine (``service.engine``) answers in these types, so the servicer only translates them to
and from protobuf; a slot's candidates themselves are columns (``service.engine.slate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

#: Event types the frontend may send; behaviour types first (EVENT_TYPES order), then impressions.
BEHAVIOUR_EVENTS: tuple[str, ...] = ("view", "click", "fav", "cart", "purchase")
TRACKED_EVENTS: tuple[str, ...] = (*BEHAVIOUR_EVENTS, "impression")


class RequestError(Exception):
    """A request the service cannot answer; the servicer maps each subclass to a gRPC status."""


class InvalidArgument(RequestError):
    """The caller sent a bad field; ``field`` names it (``slots[1].count``)."""

    def __init__(self, field_path: str, description: str) -> None:
        super().__init__(f"{field_path}: {description}")
        self.field = field_path
        self.description = description


class NotFound(RequestError):
    """The request names something the model does not know (an item for SimilarItems)."""


class ModelUnavailable(RequestError):
    """No model is loaded yet: retry later (the service waits for a bundle to be published)."""


class StateUnavailable(RequestError):
    """The online state store refused a write: events were not recorded, the caller may retry."""


@dataclass(frozen=True)
class Context:
    """What the page knows: the search box text, the order just delivered, the page's name."""

    query: str = ""
    order_item_ids: tuple[str, ...] = ()
    page_id: str = ""


@dataclass(frozen=True)
class SlotAsk:
    """One slot of a request: which slot, how many items."""

    slot: str
    count: int


@dataclass(frozen=True)
class PageRequest:
    """A Recommend (one slot) or RecommendPage (several) request in domain terms."""

    member_id: str
    slots: tuple[SlotAsk, ...]
    context: Context = Context()
    request_id: str = ""


@dataclass(frozen=True)
class Event:
    """Behaviour or an impression, from the frontend (TrackEvents) or read back from the state store."""

    member_id: str
    item_id: str
    event: str
    ts: int
    slot: str = ""
    request_id: str = ""
    event_id: str = ""  # the frontend's id (a resend with the same id is a duplicate); derived when empty
    quantity: int = 1


@dataclass(frozen=True)
class Tracked:
    """What TrackEvents stored: ``new`` events, and ``duplicates`` seen before (not stored again)."""

    new: int
    duplicates: int
    new_by_event: dict[str, int] = field(default_factory=dict)


@dataclass
class OnlineState:
    """What the state store knows about a member right now (newest events first)."""

    recent: list[Event] = field(default_factory=list)
    impressions: dict[str, int] = field(default_factory=dict)  # item_id -> times shown today
    degraded: bool = False  # the store could not be read: recent behaviour is missing
    #: earlier days' impressions, yesterday first; only as many days as the rules' widest cap asks for
    past_impressions: list[dict[str, int]] = field(default_factory=list)

    def impressions_over(self, days: int) -> dict[str, int]:
        """item_id -> impressions today and the ``days - 1`` days before (what a frequency cap counts)."""
        if days <= 1 or not self.past_impressions:
            return self.impressions
        total = dict(self.impressions)
        for day in self.past_impressions[:days - 1]:
            for item, n in day.items():
                total[item] = total.get(item, 0) + n
        return total

    @classmethod
    def unavailable(cls) -> OnlineState:
        return cls(degraded=True)


class Reason(NamedTuple):
    """One line of "why this item": the component's name, its kind and what it did."""

    step: str
    kind: str  # source | blend | boost | rule | rerank | backfill
    detail: str


@dataclass(frozen=True)
class ServedItem:
    item_id: str
    score: float
    source: str
    reasons: tuple[Reason, ...]


@dataclass
class TraceStep:
    """What one component did to the candidates: items it added or removed (item ids)."""

    step: str
    kind: str  # source | filter | blend | boost | rule | rerank | backfill | cut
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    note: str = ""
    ms: float = 0.0
    moved: list[str] = field(default_factory=list)  # "i012 9->1" for items in or moved out of the served top
    gave_way: list[str] = field(default_factory=list)  # rules that could not hold, and to what they yielded


@dataclass
class Trace:
    """Per-slot log of the recipe run; `mallrec rules preview` prints it, tests read it."""

    slot: str
    steps: list[TraceStep] = field(default_factory=list)

    def record(self, step: TraceStep) -> None:
        self.steps.append(step)

    def removed_by(self, step: str) -> list[str]:
        return [i for s in self.steps if s.step == step for i in s.removed]

    def gave_way(self) -> list[str]:
        """Every "gave way" line of the run, in order (which rule yielded to which)."""
        return [line for s in self.steps for line in s.gave_way]


@dataclass
class SlotResult:
    slot: str
    items: list[ServedItem]
    trace: Trace
    degraded: tuple[str, ...] = ()  # parts the slot skipped, e.g. "rerank" (served in first-stage order)
    experiment: str = ""  # the experiment that served the slot, and the member's arm in it
    arm: str = ""
    model_version: str = ""  # the bundle that served it (an arm may serve another than the live one)


@dataclass
class PageResult:
    """The answer to a page: one SlotResult per asked slot, in the order asked."""

    slots: list[SlotResult]
    model_version: str
    rules_version: str
    degraded: bool
    request_id: str
    degraded_reasons: tuple[str, ...] = ()  # "state_store", "rerank": what was skipped (metrics label)
