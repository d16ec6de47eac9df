from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Context(_message.Message):
    __slots__ = ("query", "order_item_ids", "page_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ORDER_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_ID_FIELD_NUMBER: _ClassVar[int]
    query: str
    order_item_ids: _containers.RepeatedScalarFieldContainer[str]
    page_id: str
    def __init__(self, query: _Optional[str] = ..., order_item_ids: _Optional[_Iterable[str]] = ..., page_id: _Optional[str] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("step", "kind", "detail")
    STEP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    step: str
    kind: str
    detail: str
    def __init__(self, step: _Optional[str] = ..., kind: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("item_id", "score", "source", "reasons")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    source: str
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., source: _Optional[str] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("member_id", "slot", "count", "request_id", "context")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    slot: str
    count: int
    request_id: str
    context: Context
    def __init__(self, member_id: _Optional[str] = ..., slot: _Optional[str] = ..., count: _Optional[int] = ..., request_id: _Optional[str] = ..., context: _Optional[_Union[Context, _Mapping]] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "model_version", "rules_version", "degraded", "request_id", "slot", "experiment", "arm")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RULES_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    model_version: str
    rules_version: str
    degraded: bool
    request_id: str
    slot: str
    experiment: str
    arm: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., model_version: _Optional[str] = ..., rules_version: _Optional[str] = ..., degraded: _Optional[bool] = ..., request_id: _Optional[str] = ..., slot: _Optional[str] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ...) -> None: ...

class SlotRequest(_message.Message):
    __slots__ = ("slot", "count")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    slot: str
    count: int
    def __init__(self, slot: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class RecommendPageRequest(_message.Message):
    __slots__ = ("member_id", "slots", "context", "request_id")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    slots: _containers.RepeatedCompositeFieldContainer[SlotRequest]
    context: Context
    request_id: str
    def __init__(self, member_id: _Optional[str] = ..., slots: _Optional[_Iterable[_Union[SlotRequest, _Mapping]]] = ..., context: _Optional[_Union[Context, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SlotItems(_message.Message):
    __slots__ = ("slot", "items", "experiment", "arm")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    slot: str
    items: _containers.RepeatedCompositeFieldContainer[Item]
    experiment: str
    arm: str
    def __init__(self, slot: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ...) -> None: ...

class RecommendPageResponse(_message.Message):
    __slots__ = ("slots", "model_version", "rules_version", "degraded", "request_id")
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RULES_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    slots: _containers.RepeatedCompositeFieldContainer[SlotItems]
    model_version: str
    rules_version: str
    degraded: bool
    request_id: str
    def __init__(self, slots: _Optional[_Iterable[_Union[SlotItems, _Mapping]]] = ..., model_version: _Optional[str] = ..., rules_version: _Optional[str] = ..., degraded: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("item_id", "count")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    count: int
    def __init__(self, item_id: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class SimilarItemsResponse(_message.Message):
    __slots__ = ("items", "model_version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    model_version: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("member_id", "item_id", "event", "ts", "slot", "request_id", "event_id", "quantity")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    item_id: str
    event: str
    ts: int
    slot: str
    request_id: str
    event_id: str
    quantity: int
    def __init__(self, member_id: _Optional[str] = ..., item_id: _Optional[str] = ..., event: _Optional[str] = ..., ts: _Optional[int] = ..., slot: _Optional[str] = ..., request_id: _Optional[str] = ..., event_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class TrackEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class TrackEventsResponse(_message.Message):
    __slots__ = ("accepted", "new_events", "duplicates")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    NEW_EVENTS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    new_events: int
    duplicates: int
    def __init__(self, accepted: _Optional[int] = ..., new_events: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...
