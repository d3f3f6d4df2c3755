"""Secrets (API keys) never reach the terminal or a log file: every log record is scrubbed of them, and so is
the text of every error that carries a reply from an endpoint."""

from __future__ import annotations

import logging

MASK = "***"
_SECRETS: set[str] = set()


def text(message: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        message = message.replace(secret, MASK)
    return message


class Filter(logging.Filter):
    """On a handler: the record's message (and traceback) with every known secret masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        record.msg, record.args = text(record.getMessage()), None
        if record.exc_info:
            record.exc_text = text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def secret(value: str) -> str:
    """Register a secret (short ones, like a local server's 'EMPTY', are not worth hiding) and make sure every
    handler in place scrubs it. Returns the value."""
    if len(value) >= 8:
        _SECRETS.add(value)
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values())]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, Filter) for f in handler.filters):
                handler.addFilter(Filter())
    return value
