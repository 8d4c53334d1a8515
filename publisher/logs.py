"""structlog set-up: JSON lines off a terminal (journald keeps them), readable lines on one.

Every event passes the redactor last-but-one, so no processor before the renderer can leak a
secret into the output. Event names are stable (`delivery.published`, `sync.file_invalid`, …).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

from publisher.redact import REDACTOR


def _redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    return REDACTOR.deep(event)


def _exception_text(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    # Render tracebacks to text *before* redaction, so the redactor sees their full text.
    exc_info = event.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        import traceback

        event["exception"] = "".join(traceback.format_exception(*exc_info))
    return event


def configure(level: str = "info", stream: TextIO | None = None, fmt: str | None = None) -> None:
    stream = stream or sys.stderr
    fmt = fmt or os.environ.get("SIAR_LOG_FORMAT") or ("console" if stream.isatty() else "json")
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _exception_text,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library: keep only their warnings, redacted too.
    handler = logging.StreamHandler(stream)
    handler.addFilter(_StdlibRedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for noisy in ("alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # APScheduler warns when a kicked dispatch finds the previous pass still running: expected
    # with exact wake-ups, and not worth a plain-text line among the JSON ones.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


class _StdlibRedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # The handler would append the traceback after this filter ran, unredacted: fold it in here.
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        if record.stack_info:
            message += "\n" + record.stack_info
        record.msg = REDACTOR(message)
        record.args = None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def get(name: str = "siar") -> Any:
    return structlog.get_logger(name)
