"""REST: the event log, by page, by long-poll and as server-sent events."""

import json
import time

from webob import Response

from .parse import event_types, float_text, int_text, query
from .server import json_response, route

MAX_WAIT = 30.0
MAX_STREAM = 3600.0
MAX_SEQ = 1 << 62
KEEPALIVE = 15.0


EVENTS_QUERY = {
    'since': (False, lambda t, n: int_text(t, n, 0, MAX_SEQ)),
    'wait': (False, lambda t, n: float_text(t, n, 0, MAX_WAIT)),
    'limit': (False, lambda t, n: int_text(t, n, 1, 1000)),
    'type': (True, event_types),
}


def select_events(log, since, kinds, limit, newest):
    """Events after ``since`` of ``kinds``: the newest ``limit`` when
    ``newest`` (no ``since`` given), else the oldest (paging forward)."""
    found = log.since(since or 0, kinds=kinds)
    more = len(found) > limit
    page = found[-limit:] if newest else found[:limit]
    if more and not newest:
        next_since = page[-1]['seq']
    else:
        next_since = log.seq
        more = False
    return page, next_since, more


@route('GET', '/v1/events')
def events(api, req):
    """Recent events; with ``since`` and ``wait``, a long-poll."""
    args = query(req, EVENTS_QUERY)
    log = api.event_log
    since, kinds = args.get('since'), args.get('type')
    limit = args.get('limit', 100)
    newest = since is None
    base = since or 0
    page, next_since, more = select_events(log, base, kinds, limit, newest)
    wait = args.get('wait', 0.0)
    if not page and wait > 0 and base <= log.seq:
        api.notifier.wait_for(
            lambda: bool(log.since(base, kinds=kinds)), wait)
        page, next_since, more = select_events(log, base, kinds, limit,
                                               newest)
    return json_response(200, {'events': page, 'next_since': next_since,
                               'seq': log.seq, 'more': more})


STREAM_QUERY = {
    'since': (False, lambda t, n: int_text(t, n, 0, MAX_SEQ)),
    'timeout': (False, lambda t, n: float_text(t, n, 0, MAX_STREAM)),
    'type': (True, event_types),
}


@route('GET', '/v1/events/stream')
def event_stream(api, req):
    """Server-sent events: ``id`` is the sequence number, ``event`` the
    type; a reconnecting browser resumes after ``Last-Event-ID``."""
    args = query(req, STREAM_QUERY)
    log = api.event_log
    since = args.get('since')
    last_id = req.headers.get('Last-Event-ID')
    if since is None and last_id:
        since = int_text(last_id, 'Last-Event-ID', 0, MAX_SEQ)
    if since is None:
        since = log.seq
    # eventlet.wsgi holds back writes below 4 KiB unless told otherwise;
    # an event must leave when it happens.
    req.environ['eventlet.minimum_write_chunk_size'] = 0
    resp = Response(status=200, content_type='text/event-stream',
                    charset='utf-8')
    resp.headers['Cache-Control'] = 'no-cache'
    resp.headers['X-Accel-Buffering'] = 'no'
    resp.app_iter = _sse(api.notifier, log, since, args.get('type'),
                         args.get('timeout', 300.0))
    return resp


def _sse(notifier, log, since, kinds, timeout):
    deadline = time.monotonic() + timeout
    yield b'retry: 2000\n\n'
    while True:
        for event in log.since(since, kinds=kinds):
            since = event['seq']
            yield ('id: %d\nevent: %s\ndata: %s\n\n' % (
                event['seq'], event['type'],
                json.dumps(event, default=str))).encode()
        if since < log.seq and kinds:
            since = log.seq
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if not notifier.wait_for(
                lambda: bool(log.since(since, kinds=kinds)),
                min(left, KEEPALIVE)):
            if deadline - time.monotonic() > 0:
                yield b': keepalive\n\n'
