"""civicchat: municipal citizen-service messaging.

Channels (WhatsApp Cloud API, Telegram, a web chat), a Catalan/Spanish keyword engine, office-hours
routing with human handoff, and storage with a durable inbox and outbox.

The names most programs need are importable from here (``from civicchat import KeywordEngine``);
everything else lives in its area's package (``civicchat.channels``, ``civicchat.storage``...).
Only the clock and the exception tree load with ``import civicchat``: every other name is imported
the first time it is used, so a script that needs the keyword engine does not pay for SQLAlchemy
or Starlette.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from civicchat.clock import Clock, ManualClock, SystemClock
from civicchat.exceptions import (
    CatalogError,
    ChannelError,
    CivicchatError,
    ConfigError,
    MediaError,
    RoutingError,
    SendError,
    StorageError,
    WebhookError,
)

if _typing.TYPE_CHECKING:
    from civicchat.bot import Bot
    from civicchat.cases.errors import CaseError
    from civicchat.keywords import (
        Catalog,
        KeywordAnswer,
        KeywordEngine,
        detect_language,
        load_catalog,
        normalize,
        parse_catalog,
    )
    from civicchat.messages import (
        Buttons,
        Contacts,
        DeliveryStatus,
        InboundMessage,
        InteractiveReply,
        ListMenu,
        Location,
        LocationRequest,
        MarkRead,
        Media,
        MediaKind,
        OutboundMessage,
        Reaction,
        StatusUpdate,
        SystemNotice,
        Template,
        Text,
        Unsupported,
    )
    from civicchat.routing import OfficeHours, Pipeline, load_office_hours
    from civicchat.service.app import create_app
    from civicchat.service.config import load_config
    from civicchat.storage import open_store

__version__ = "0.1.0.dev0"

# name -> the module it is imported from on first use
_LAZY: dict[str, str] = {
    "Bot": "civicchat.bot",
    "CaseError": "civicchat.cases.errors",
    **dict.fromkeys(
        [
            "Catalog",
            "KeywordAnswer",
            "KeywordEngine",
            "detect_language",
            "load_catalog",
            "normalize",
            "parse_catalog",
        ],
        "civicchat.keywords",
    ),
    **dict.fromkeys(
        [
            "Buttons",
            "Contacts",
            "DeliveryStatus",
            "InboundMessage",
            "InteractiveReply",
            "ListMenu",
            "Location",
            "LocationRequest",
            "MarkRead",
            "Media",
            "MediaKind",
            "OutboundMessage",
            "Reaction",
            "StatusUpdate",
            "SystemNotice",
            "Template",
            "Text",
            "Unsupported",
        ],
        "civicchat.messages",
    ),
    "OfficeHours": "civicchat.routing",
    "Pipeline": "civicchat.routing",
    "load_office_hours": "civicchat.routing",
    "create_app": "civicchat.service.app",
    "load_config": "civicchat.service.config",
    "open_store": "civicchat.storage",
}

__all__ = [
    "Bot",
    "Buttons",
    "CaseError",
    "Catalog",
    "CatalogError",
    "ChannelError",
    "CivicchatError",
    "Clock",
    "ConfigError",
    "Contacts",
    "DeliveryStatus",
    "InboundMessage",
    "InteractiveReply",
    "KeywordAnswer",
    "KeywordEngine",
    "ListMenu",
    "Location",
    "LocationRequest",
    "ManualClock",
    "MarkRead",
    "Media",
    "MediaError",
    "MediaKind",
    "OfficeHours",
    "OutboundMessage",
    "Pipeline",
    "Reaction",
    "RoutingError",
    "SendError",
    "StatusUpdate",
    "StorageError",
    "SystemClock",
    "SystemNotice",
    "Template",
    "Text",
    "Unsupported",
    "WebhookError",
    "__version__",
    "create_app",
    "detect_language",
    "load_catalog",
    "load_config",
    "load_office_hours",
    "normalize",
    "open_store",
    "parse_catalog",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'civicchat' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
