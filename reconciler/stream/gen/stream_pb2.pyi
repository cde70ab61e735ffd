# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlatformMessage(_message.Message):
    __slots__ = ("recommendation", "crd_update", "rollback_request", "policy_update", "heartbeat", "upstream_ack", "recommendation_batch")
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    CRD_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_REQUEST_FIELD_NUMBER: _ClassVar[int]
    POLICY_UPDATE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ACK_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_BATCH_FIELD_NUMBER: _ClassVar[int]
    recommendation: Recommendation
    crd_update: CrdUpdate
    rollback_request: RollbackRequest
    policy_update: PolicyUpdate
    heartbeat: Heartbeat
    upstream_ack: UpstreamAck
    recommendation_batch: RecommendationBatch
    def __init__(self, recommendation: _Optional[_Union[Recommendation, _Mapping]] = ..., crd_update: _Optional[_Union[CrdUpdate, _Mapping]] = ..., rollback_request: _Optional[_Union[RollbackRequest, _Mapping]] = ..., policy_update: _Optional[_Union[PolicyUpdate, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., upstream_ack: _Optional[_Union[UpstreamAck, _Mapping]] = ..., recommendation_batch: _Optional[_Union[RecommendationBatch, _Mapping]] = ...) -> None: ...

class RecommendationBatch(_message.Message):
    __slots__ = ("recommendations",)
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    recommendations: _containers.RepeatedCompositeFieldContainer[Recommendation]
    def __init__(self, recommendations: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("sequence", "id", "document_json")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    id: str
    document_json: str
    def __init__(self, sequence: _Optional[int] = ..., id: _Optional[str] = ..., document_json: _Optional[str] = ...) -> None: ...

class CrdUpdate(_message.Message):
    __slots__ = ("sequence", "id", "crd_json")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CRD_JSON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    id: str
    crd_json: str
    def __init__(self, sequence: _Optional[int] = ..., id: _Optional[str] = ..., crd_json: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("sequence", "id", "kind", "recommendation_id", "reason")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    id: str
    kind: str
    recommendation_id: str
    reason: str
    def __init__(self, sequence: _Optional[int] = ..., id: _Optional[str] = ..., kind: _Optional[str] = ..., recommendation_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PolicyUpdate(_message.Message):
    __slots__ = ("sequence", "id", "data_json")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    id: str
    data_json: str
    def __init__(self, sequence: _Optional[int] = ..., id: _Optional[str] = ..., data_json: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("unix_millis",)
    UNIX_MILLIS_FIELD_NUMBER: _ClassVar[int]
    unix_millis: int
    def __init__(self, unix_millis: _Optional[int] = ...) -> None: ...

class UpstreamAck(_message.Message):
    __slots__ = ("upstream_sequence",)
    UPSTREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    upstream_sequence: int
    def __init__(self, upstream_sequence: _Optional[int] = ...) -> None: ...

class OperatorMessage(_message.Message):
    __slots__ = ("hello", "ack", "nack", "status_update", "audit_event", "heartbeat", "replies")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    STATUS_UPDATE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_EVENT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    ack: Ack
    nack: Nack
    status_update: StatusUpdate
    audit_event: AuditEvent
    heartbeat: Heartbeat
    replies: Replies
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., nack: _Optional[_Union[Nack, _Mapping]] = ..., status_update: _Optional[_Union[StatusUpdate, _Mapping]] = ..., audit_event: _Optional[_Union[AuditEvent, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., replies: _Optional[_Union[Replies, _Mapping]] = ...) -> None: ...

class Replies(_message.Message):
    __slots__ = ("acks", "nacks")
    ACKS_FIELD_NUMBER: _ClassVar[int]
    NACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[Ack]
    nacks: _containers.RepeatedCompositeFieldContainer[Nack]
    def __init__(self, acks: _Optional[_Iterable[_Union[Ack, _Mapping]]] = ..., nacks: _Optional[_Iterable[_Union[Nack, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("cluster_id", "operator_version", "resume_from")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    operator_version: str
    resume_from: int
    def __init__(self, cluster_id: _Optional[str] = ..., operator_version: _Optional[str] = ..., resume_from: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("sequence", "id", "duplicate")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    id: str
    duplicate: bool
    def __init__(self, sequence: _Optional[int] = ..., id: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class Nack(_message.Message):
    __slots__ = ("sequence", "id", "reason", "violations")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    id: str
    reason: str
    violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    def __init__(self, sequence: _Optional[int] = ..., id: _Optional[str] = ..., reason: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "reason")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    field: str
    reason: str
    def __init__(self, field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StatusUpdate(_message.Message):
    __slots__ = ("upstream_sequence", "kind", "recommendation_id", "phase", "message", "pull_request_url", "decision_json", "time")
    UPSTREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_URL_FIELD_NUMBER: _ClassVar[int]
    DECISION_JSON_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    upstream_sequence: int
    kind: str
    recommendation_id: str
    phase: str
    message: str
    pull_request_url: str
    decision_json: str
    time: str
    def __init__(self, upstream_sequence: _Optional[int] = ..., kind: _Optional[str] = ..., recommendation_id: _Optional[str] = ..., phase: _Optional[str] = ..., message: _Optional[str] = ..., pull_request_url: _Optional[str] = ..., decision_json: _Optional[str] = ..., time: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("upstream_sequence", "time", "action", "kind", "recommendation_id", "details_json")
    UPSTREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    upstream_sequence: int
    time: str
    action: str
    kind: str
    recommendation_id: str
    details_json: str
    def __init__(self, upstream_sequence: _Optional[int] = ..., time: _Optional[str] = ..., action: _Optional[str] = ..., kind: _Optional[str] = ..., recommendation_id: _Optional[str] = ..., details_json: _Optional[str] = ...) -> None: ...
