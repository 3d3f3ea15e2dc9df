"""The error log: logger 'lichen.error', on stderr, in gunicorn's format."""

import logging
import sys

from .config import LOG_LEVELS

ERROR_LOGGER = "lichen.error"
FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S %z"

logger = logging.getLogger(ERROR_LOGGER)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record, so a
    replaced stderr (tests, daemonising) is honoured."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure(level):
    """Set the error log's level; add our stderr handler once, unless the
    application has already put handlers on the logger itself."""
    logger.setLevel(LOG_LEVELS.get(level, level))
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        handler._lichen = True
        logger.addHandler(handler)
        logger.propagate = False
    return logger


def engine_log(level, message, exc):
    """The callable the engine reports through: application errors come with
    their exception, whose traceback is printed."""
    if exc is not None:
        logger.log(level, message, exc_info=(type(exc), exc, exc.__traceback__))
    else:
        logger.log(level, message)
