"""Complaints, street incidents and suggestions: a guided chat flow, cases, Open311 forwarding.

::

    from civicchat.cases import CaseFlow, MemoryCaseStore, NoGeocoder, load_cases_config

    config = load_cases_config("examples/mataro/cases.yaml")
    flow = CaseFlow(config, MemoryCaseStore(), NoGeocoder(), SystemClock())
    step = await flow.handle(state, inbound_message, "ca")   # FlowStep: state, contents, case

See ``docs/cases.md``.
"""

from civicchat.cases.base import CaseStore, CaseUpkeep, Geocoder, NoGeocoder
from civicchat.cases.config import CaseCategory, CasesConfig, Department, load_cases_config
from civicchat.cases.errors import (
    CaseError,
    CaseNotFoundError,
    CaseReferenceError,
    Open311Error,
    Open311RejectedError,
    Open311TransientError,
)
from civicchat.cases.flow import FLOW_DATA_KEY, CaseFlow, FlowStage, FlowState, FlowStep, start_kind
from civicchat.cases.geo import Boundary, map_link, point_in_polygon
from civicchat.cases.memory import MemoryCaseStore, anonymised_copy
from civicchat.cases.models import (
    Case,
    CaseChange,
    CaseKind,
    CaseLocation,
    CaseReference,
    CaseStatus,
    ChangeKind,
    MediaRef,
    NewCase,
    Open311Link,
)
from civicchat.cases.notify import CitizenNotification, status_notification
from civicchat.cases.open311 import (
    ForwardResult,
    Open311Client,
    Open311Service,
    RemoteStatus,
    RetryPolicy,
    SubmitResult,
    forward_case,
    map_remote_status,
    poll_case,
    signed_media_url,
    verify_media_signature,
    verify_signed_media_url,
    with_retries,
)
from civicchat.cases.retention import (
    RetentionAction,
    RetentionDecision,
    apply_retention,
    retention_decisions,
)

__all__ = [
    "FLOW_DATA_KEY",
    "Boundary",
    "Case",
    "CaseCategory",
    "CaseChange",
    "CaseError",
    "CaseFlow",
    "CaseKind",
    "CaseLocation",
    "CaseNotFoundError",
    "CaseReference",
    "CaseReferenceError",
    "CaseStatus",
    "CaseStore",
    "CaseUpkeep",
    "CasesConfig",
    "ChangeKind",
    "CitizenNotification",
    "Department",
    "FlowStage",
    "FlowState",
    "FlowStep",
    "ForwardResult",
    "Geocoder",
    "MediaRef",
    "MemoryCaseStore",
    "NewCase",
    "NoGeocoder",
    "Open311Client",
    "Open311Error",
    "Open311Link",
    "Open311RejectedError",
    "Open311Service",
    "Open311TransientError",
    "RemoteStatus",
    "RetentionAction",
    "RetentionDecision",
    "RetryPolicy",
    "SubmitResult",
    "anonymised_copy",
    "apply_retention",
    "forward_case",
    "load_cases_config",
    "map_link",
    "map_remote_status",
    "point_in_polygon",
    "poll_case",
    "retention_decisions",
    "signed_media_url",
    "start_kind",
    "status_notification",
    "verify_media_signature",
    "verify_signed_media_url",
    "with_retries",
]
