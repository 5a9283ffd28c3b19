"""REST API v1 on WebOb, served by the app's hub: the server.

No framework: a route table of (method, path template, handler) that the
OpenAPI document (openapi.json) must match exactly; a test walks both.  The
handlers live one module per resource group (vns.py, nves.py, events.py,
status.py, docs.py), each registering its routes with :func:`route`; they
stay thin -- parse and validate (parse.py), call, render -- because every
decision lives in the authority.

Why validation happens twice: the handlers check the *shape* of a request
(a JSON object, no unknown field, the right JSON types, path and query
syntax) before anything is called, so a wrong request is answered with the
field it got wrong; the database then checks the *values* (ranges, existence,
conflicts) before it mutates anything.  Every write is one command
(authority/commands.py) given to ``ctl.execute()``, which commits (persists,
plans flows) only what the database accepted, so a request that fails
changes nothing.

Errors are ``{"error": {"code", "message", "field"}}`` with 400/404/405/409/
413; anything else is a bug: it is logged with its traceback and answered
500, and the tests (including OpenAPI-driven fuzzing) prove no input gets
there.

Long-polling (``GET /v1/events?since=&wait=``) and server-sent events
(``GET /v1/events/stream``) wait on a :class:`HubNotifier` woken by an
EventLog listener: under osken-manager that is an ``os_ken.lib.hub.Event``,
so a waiting request parks its own green thread and never the event loop.
"""

import json
import logging
import os
import re
import threading
import time

from webob import Request, Response

from .. import metrics as metrics_mod
from ...authority.errors import BadRequest, MappingError, NotFound

LOG = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB_DIR = os.path.join(HERE, 'web')
OPENAPI_PATH = os.path.join(HERE, 'openapi.json')


class MethodNotAllowed(MappingError):
    """A path that exists, with another method (405, with Allow)."""

    status = 405
    code = 'method-not-allowed'

    def __init__(self, message, allowed):
        super().__init__(message)
        self.headers = [('Allow', ', '.join(sorted(allowed)))]


# --- waking long-polls ------------------------------------------------------

class HubNotifier:
    """Long-poll waits in the os-ken hub: one hub.Event per waiter."""

    def __init__(self):
        self._waiting = set()

    def notify(self, _event=None):
        """Wake every waiting request (an EventLog listener)."""
        for waiter in list(self._waiting):
            waiter.set()

    def wait_for(self, predicate, timeout):
        """Wait until ``predicate()`` holds or ``timeout`` passes; whether it
        holds."""
        from os_ken.lib import hub   # eventlet is set up by os-ken
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            waiter = hub.Event()
            self._waiting.add(waiter)
            try:
                waiter.wait(left)
            finally:
                self._waiting.discard(waiter)
        return True


class ThreadNotifier:
    """The same for servers with OS threads (tests, wsgiref)."""

    def __init__(self):
        self._cond = threading.Condition()

    def notify(self, _event=None):
        """Wake every waiting request (an EventLog listener)."""
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate, timeout):
        """Wait until ``predicate()`` holds or ``timeout`` passes; whether it
        holds."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)


# --- the route table ---------------------------------------------------------

ROUTES = []


class Route:
    """One route: a method, a path template and its handler."""

    def __init__(self, method, template, handler):
        self.method = method
        self.template = template
        self.handler = handler
        pattern = re.sub(r'\{(\w+)\}', r'(?P<\1>[^/]+)', template)
        self.regex = re.compile(pattern)


def route(method, template):
    """Register the decorated handler for ``method`` on ``template``."""
    def register(handler):
        ROUTES.append(Route(method, template, handler))
        return handler
    return register


def route_table():
    """``{(METHOD, template)}``: what the OpenAPI document must describe."""
    return {(r.method, r.template) for r in ROUTES}


# --- parsing helpers ---------------------------------------------------------


# --- rendering ---------------------------------------------------------------

def json_response(status, body, headers=None):
    """A JSON response (no body for 204)."""
    resp = Response(status=status, headerlist=list(headers or []))
    if status == 204:
        return resp
    resp.content_type = 'application/json'
    resp.charset = None
    resp.body = (json.dumps(body, default=str, indent=None) + '\n').encode()
    return resp


def error_response(status, code, message, field=None, headers=None):
    """An error response ``{"error": {"code", "message", "field"}}``."""
    return json_response(status, {'error': {
        'code': code, 'message': message, 'field': field}}, headers)


# --- the WSGI application ----------------------------------------------------

class RestApp:
    """The WSGI callable.  ``ctl`` is the app (app.NVO3App) or anything
    with what REST uses of it: ``execute(command)`` (every write, answered
    once it is durable and its flows are on their way), ``views``
    (authority/views.py), ``event_log``, ``counters``,
    ``sync_status(dpid)``, ``audit_now(dpid)`` and ``store_stats()``."""

    def __init__(self, ctl, notifier=None, metrics=None):
        self.ctl = ctl
        self.views = ctl.views
        self.event_log = ctl.event_log
        self.notifier = notifier or HubNotifier()
        self.event_log.listeners.append(self.notifier.notify)
        self.metrics = metrics or metrics_mod.Metrics(
            ctl.counters, ctl.views, ctl.event_log, ctl.sync_status,
            ctl.store_stats)
        with open(OPENAPI_PATH, 'rb') as handle:
            self.openapi = handle.read()

    def __call__(self, environ, start_response):
        started = time.monotonic()
        req = Request(environ)
        label = 'unmatched'
        try:
            try:
                found, params = self._match(req)
            except UnicodeDecodeError:
                raise BadRequest('the request URL is not valid UTF-8') \
                    from None
            label = found.template
            try:
                req.GET.items()
            except UnicodeDecodeError:
                raise BadRequest('the query string is not valid UTF-8') \
                    from None
            resp = found.handler(self, req, **params)
        except MappingError as exc:
            headers = getattr(exc, 'headers', None)
            resp = error_response(exc.status, exc.code, exc.message,
                                  exc.field, headers)
        except Exception:  # pylint: disable=broad-except
            LOG.exception('REST %s %s failed', req.method,
                          environ.get('PATH_INFO'))
            resp = error_response(500, 'internal-error',
                                  'internal error; see the app log')
        self.metrics.observe_request(req.method, label, resp.status_code,
                                     time.monotonic() - started)
        return resp(environ, start_response)

    @staticmethod
    def _match(req):
        path = req.path_info
        allowed = []
        for candidate in ROUTES:
            hit = candidate.regex.fullmatch(path)
            if hit is None:
                continue
            if candidate.method == req.method:
                return candidate, hit.groupdict()
            allowed.append(candidate.method)
        if allowed:
            raise MethodNotAllowed('%s is not allowed on %s; allowed: %s' % (
                req.method, path[:100], ', '.join(sorted(allowed))), allowed)
        raise NotFound('no such resource: %s' % path[:100])

    def execute(self, command):
        """Every write: one command, committed by the controller."""
        return self.ctl.execute(command)

    # -- views --

    def nve_view(self, nve):
        """The NVE's view with its channel's sync state."""
        view = self.views.nve(nve)
        status = self.ctl.sync_status(nve.dpid)
        for key in ('synced', 'in_sync', 'requested_seq', 'applied_seq',
                    'pending'):
            view[key] = status.get(key)
        return view

    @staticmethod
    def mapping_view(entry):
        """A mapping entry as REST shows it (with its origin)."""
        return dict(entry, origin=entry.get('source'))


def make_app(ctl, notifier=None, metrics=None):
    """The WSGI app for ``ctl`` (see the module docstring)."""
    return RestApp(ctl, notifier, metrics)
