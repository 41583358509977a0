"""Structured logs: one JSON object per line on stderr, or plain text with FC_LOG_FORMAT=text.

`logger("pool")` returns a small logger; extra keyword arguments become fields
(`messageId`, `pool`, `group`, ...). FC_LOG_LEVEL picks the threshold (default INFO).
MicroPython has no `logging`, so this is the one logging facility of the core.
"""

import sys

from . import jsoncodec
from .compat import getenv, wall_time
from .timefmt import iso_utc_ms

LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

_settings = {"level": 20, "text": False, "stream": None}


def configure(level=None, fmt=None, stream=None):
    """Set the threshold and format; None reads FC_LOG_LEVEL / FC_LOG_FORMAT."""
    name = (level or getenv("FC_LOG_LEVEL", "INFO")).upper()
    if name not in LEVELS:
        raise ValueError("FC_LOG_LEVEL: unknown level %r (use DEBUG, INFO, WARN, ERROR)" % name)
    _settings["level"] = LEVELS[name]
    _settings["text"] = (fmt or getenv("FC_LOG_FORMAT", "json")).lower() == "text"
    _settings["stream"] = stream


class Logger:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def enabled(self, level):
        return LEVELS[level] >= _settings["level"]

    def log(self, level, msg, fields):
        if LEVELS[level] < _settings["level"]:
            return
        stream = _settings["stream"] or sys.stderr
        ts = iso_utc_ms(wall_time())
        if _settings["text"]:
            extra = " ".join("%s=%s" % (k, fields[k]) for k in sorted(fields))
            line = "%s %-5s %s: %s%s" % (ts, level, self.name, msg, " " + extra if extra else "")
        else:
            record = {"ts": ts, "level": level, "logger": self.name, "msg": msg}
            for k in fields:
                record[k] = fields[k]
            try:
                line = jsoncodec.dumps(record)
            except (TypeError, ValueError):
                record = {"ts": ts, "level": level, "logger": self.name, "msg": msg, "fields": repr(fields)}
                line = jsoncodec.dumps(record)
        stream.write(line + "\n")

    def debug(self, msg, **fields):
        self.log("DEBUG", msg, fields)

    def info(self, msg, **fields):
        self.log("INFO", msg, fields)

    def warn(self, msg, **fields):
        self.log("WARN", msg, fields)

    def error(self, msg, **fields):
        self.log("ERROR", msg, fields)


_loggers = {}


def logger(name):
    lg = _loggers.get(name)
    if lg is None:
        lg = _loggers[name] = Logger(name)
    return lg


try:
    configure()
except ValueError:  # an entry point calls configure() itself and reports the bad value
    pass
