"""Bounded logging of what peers make the app say.

A switch, an RPC client or an HTTP client can make the app log: a
malformed message, a refused connection, an accept that failed.  Logged
as it comes, one peer fills the disk (an unknown OpenFlow message was
logged with a traceback and a hex dump several times its own size).  Here
every such line is

* rate-limited per *kind* (the logger and the message's format string):
  at most ``per_minute`` lines a minute; the next line that passes says
  how many were held back;
* cut at ``max_chars`` characters, and a traceback is replaced by its last
  line.

:class:`PeerLog` is what our code calls; :func:`guard_loggers` puts the same
limit on os-ken's and eventlet's own loggers, whose lines a peer can
trigger too (os-ken's parse errors, hello failures, handler exceptions).
Counting stays exact: callers count every event in the app's counters
whatever is logged.
"""

import logging
import time
import traceback

# os-ken and eventlet loggers that log what a peer sent or did (BGP peers
# too: over eBGP an EVPN peer sends our own routes back, and os-ken logs
# each such UPDATE whole at ERROR).
PEER_LOGGERS = ('os_ken.controller.controller',
                'os_ken.ofproto.ofproto_parser', 'OFPHandler',
                'os_ken.lib.hub', 'os_ken.base.app_manager',
                'bgpspeaker.peer', 'bgpspeaker.speaker',
                'bgpspeaker.processor', 'bgpspeaker.core')
MAX_CHARS = 500


class RateLimiter:
    """At most ``per_minute`` events per key in any minute (a token
    bucket refilled continuously); counts what it refused."""

    def __init__(self, per_minute, clock=time.monotonic, max_keys=1024):
        self.per_minute = per_minute
        self.clock = clock
        self.max_keys = max_keys
        self._buckets = {}          # key -> [tokens, last, suppressed]

    def allow(self, key):
        """``(allowed, suppressed_before)``: whether to log now, and how
        many of this kind were held back since the last one logged."""
        if self.per_minute <= 0:
            return True, 0
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                # Keys are code's format strings, so this never fills in
                # practice; if it does, forget the oldest.
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[key] = [float(self.per_minute), now, 0]
        tokens = min(float(self.per_minute), bucket[0] + (
            now - bucket[1]) * self.per_minute / 60.0)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            bucket[2] += 1
            return False, 0
        bucket[0] = tokens - 1.0
        held, bucket[2] = bucket[2], 0
        return True, held


def shorten(text, limit=MAX_CHARS):
    """``text`` cut at ``limit`` characters, saying how many were cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    return '%s... (%d characters cut)' % (text[:limit], len(text) - limit)


class PeerLog:
    """Log lines caused by peers, bounded (see the module docstring)."""

    def __init__(self, logger, limiter, max_chars=MAX_CHARS):
        self.logger = logger
        self.limiter = limiter
        self.max_chars = max_chars

    def log(self, level, msg, *args):
        """Log ``msg % args`` at ``level`` unless its kind is over the
        rate (shortened; saying how many were held back); whether it
        was logged."""
        allowed, held = self.limiter.allow((self.logger.name, msg))
        if not allowed:
            return False
        text = shorten(msg % args if args else msg, self.max_chars)
        if held:
            text += ' (%d more like this not logged)' % held
        self.logger.log(level, '%s', text)
        return True

    def warning(self, msg, *args):
        """:meth:`log` at WARNING."""
        return self.log(logging.WARNING, msg, *args)

    def info(self, msg, *args):
        """:meth:`log` at INFO."""
        return self.log(logging.INFO, msg, *args)

    def error(self, msg, *args):
        """:meth:`log` at ERROR."""
        return self.log(logging.ERROR, msg, *args)


class LimitFilter(logging.Filter):
    """The same bound on a logger we do not call ourselves."""

    def __init__(self, limiter, max_chars=MAX_CHARS):
        super().__init__()
        self.limiter = limiter
        self.max_chars = max_chars

    def filter(self, record):
        """Pass ``record`` (shortened, a traceback as its last line) unless
        its kind is over the rate."""
        allowed, held = self.limiter.allow((record.name, str(record.msg)))
        if not allowed:
            return False
        try:
            text = record.getMessage()
        except Exception:  # pylint: disable=broad-except
            text = str(record.msg)
        text = shorten(text, self.max_chars)
        if record.exc_info and record.exc_info[1] is not None:
            last = traceback.format_exception_only(*record.exc_info[:2])
            text += ' [%s]' % shorten(''.join(last).strip(), 200)
            record.exc_info = None
            record.exc_text = None
        if held:
            text += ' (%d more like this not logged)' % held
        record.msg, record.args = text, None
        return True


def guard_loggers(limiter, names=PEER_LOGGERS, max_chars=MAX_CHARS):
    """Put one :class:`LimitFilter` on each of ``names`` (once)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, LimitFilter) for f in logger.filters):
            logger.addFilter(LimitFilter(limiter, max_chars))
