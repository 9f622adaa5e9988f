# ruff: noqa
# fmt: off
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrafficSplit(_message.Message):
    __slots__ = ("traffic", "shadow", "sticky")
    class TrafficEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ShadowEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    STICKY_FIELD_NUMBER: _ClassVar[int]
    traffic: _containers.ScalarMap[str, int]
    shadow: _containers.ScalarMap[str, int]
    sticky: str
    def __init__(self, traffic: _Optional[_Mapping[str, int]] = ..., shadow: _Optional[_Mapping[str, int]] = ..., sticky: _Optional[str] = ...) -> None: ...

class TrafficShowRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class TrafficSetRequest(_message.Message):
    __slots__ = ("model", "split", "clear")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    model: str
    split: TrafficSplit
    clear: bool
    def __init__(self, model: _Optional[str] = ..., split: _Optional[_Union[TrafficSplit, _Mapping]] = ..., clear: bool = ...) -> None: ...

class TrafficResponse(_message.Message):
    __slots__ = ("model", "source", "split", "ready", "arms_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    ARMS_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    source: str
    split: TrafficSplit
    ready: _containers.RepeatedScalarFieldContainer[str]
    arms_json: str
    def __init__(self, model: _Optional[str] = ..., source: _Optional[str] = ..., split: _Optional[_Union[TrafficSplit, _Mapping]] = ..., ready: _Optional[_Iterable[str]] = ..., arms_json: _Optional[str] = ...) -> None: ...

class RolloutRequest(_message.Message):
    __slots__ = ("model", "spec_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    spec_json: str
    def __init__(self, model: _Optional[str] = ..., spec_json: _Optional[str] = ...) -> None: ...

class RolloutResponse(_message.Message):
    __slots__ = ("status_json",)
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    status_json: str
    def __init__(self, status_json: _Optional[str] = ...) -> None: ...
