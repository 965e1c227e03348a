"""Putting files edited in the console in force in a running service, in every process.

The admin pages write the office-hours file and publish
``LiveEvent(kind="catalog_changed", data={"what": "office_hours"})``; every process's runtime
hears it (in-process bus or PostgreSQL ``LISTEN/NOTIFY``) and hands it to
:func:`on_office_hours_changed`, which re-reads the file into the account's routing pipeline. A file
that no longer validates is logged and the hours in force stay (the admin validated it before
writing, so this only happens when someone edits the file by hand).
"""

from __future__ import annotations

import logging
from pathlib import Path

from civicchat.bot import BotAccount
from civicchat.exceptions import ConfigError
from civicchat.routing import Pipeline, load_office_hours
from civicchat.service.config import ServiceConfig
from civicchat.service.live import LiveEvent

__all__ = ["OFFICE_HOURS", "on_office_hours_changed", "reload_office_hours"]

logger = logging.getLogger("civicchat.service")

OFFICE_HOURS = "office_hours"  # LiveEvent.data["what"] of an office-hours edit


def reload_office_hours(pipeline: Pipeline, path: Path) -> bool:
    """Read the office hours at ``path`` into ``pipeline``; ``False`` (logged) when unreadable."""
    try:
        hours = load_office_hours(path)
        pipeline.set_office_hours(hours)
    except (OSError, ConfigError) as exc:
        logger.error("office hours of %s not reloaded: %s", pipeline.account, exc)
        return False
    logger.info("office hours of %s reloaded from %s", pipeline.account, path.name)
    return True


def on_office_hours_changed(event: LiveEvent, account: BotAccount, config: ServiceConfig) -> bool:
    """Handle ``event`` if it announces an office-hours edit of ``account``; ``True`` if it did.

    Call it first in the runtime's live-event handler; on ``True`` the event needs nothing else
    (the keyword catalog did not change).
    """
    if event.kind != "catalog_changed" or event.data.get("what") != OFFICE_HOURS:
        return False
    for acfg in config.accounts:
        if acfg.name == account.name:
            reload_office_hours(account.pipeline, acfg.office_hours)
            break
    return True
