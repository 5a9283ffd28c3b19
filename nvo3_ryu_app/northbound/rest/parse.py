"""Request shape checks of the REST API: bodies, fields, paths, queries.

Each check raises BadRequest naming the field it got wrong; the values
(ranges, existence, conflicts) are the database's to check.
"""

import json
import re
import time

from ...authority import addresses
from ...authority.events import TYPES as EVENT_TYPES
from ...authority.errors import BadRequest, MappingError

MAX_BODY = 1 << 20


class TooLarge(MappingError):
    """A request body over MAX_BODY."""

    status = 413
    code = 'too-large'


class UnsupportedMediaType(MappingError):
    """A request body not sent as ``application/json`` (415)."""

    status = 415
    code = 'unsupported-media-type'


class RequestTimeout(MappingError):
    """A request body not sent by the request's deadline (408)."""

    status = 408
    code = 'request-timeout'


def _json_constant(name):
    raise ValueError('%s is not JSON' % name)


def read_body(req):
    """The request body as a JSON object (dict), or BadRequest.

    Only ``Content-Type: application/json``: a browser sends that only
    after a CORS preflight this API never answers, so another site's page
    cannot post a form or a text body here (cross-site request forgery).
    A client that stops sending, or goes away, mid-body is a clear error,
    never a 500: see :func:`_read_raw`."""
    ctype = (req.content_type or '').strip().lower()
    if ctype != 'application/json':
        raise UnsupportedMediaType(
            'the request body must be JSON, sent with Content-Type: '
            'application/json, not %r' % (ctype[:60] or 'none',),
            'Content-Type')
    if req.content_length is not None and req.content_length > MAX_BODY:
        raise TooLarge('request body larger than %d bytes' % MAX_BODY)
    raw = _read_raw(req)
    if len(raw) > MAX_BODY:
        raise TooLarge('request body larger than %d bytes' % MAX_BODY)
    if not raw.strip():
        raise BadRequest('request body must be a JSON object')
    try:
        body = json.loads(raw.decode('utf-8'),
                          parse_constant=_json_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest('request body is not valid JSON: %s' % (
            str(exc)[:200],)) from None
    if not isinstance(body, dict):
        raise BadRequest('request body must be a JSON object, not %s' %
                         type(body).__name__)
    return body


def _read_raw(req):
    """At most MAX_BODY + 1 bytes of the body, by the request's deadline
    (``nvo3.deadline`` in the environ, set by server.Server)."""
    deadline = req.environ.get('nvo3.deadline')
    timer = None
    if deadline is not None:
        from os_ken.lib import hub   # eventlet is set up by os-ken
        left = deadline - time.monotonic()
        if left <= 0:
            raise RequestTimeout('the request was not sent in time')
        timer = hub.Timeout(left)
    try:
        return req.body_file.read(MAX_BODY + 1)
    except (OSError, ValueError) as exc:
        # webob's DisconnectionError (an IOError), eventlet's errors on a
        # chunked body cut short, a reset: the client went away.
        raise BadRequest('the request body ended early (%s)' % (
            str(exc)[:100],)) from None
    except BaseException as exc:
        if timer is not None and exc is timer:
            raise RequestTimeout('the request body was not sent in time '
                                 '(%g s for a whole request)' % (
                                     req.environ.get('nvo3.request_timeout',
                                                     0),)) from None
        raise
    finally:
        if timer is not None:
            timer.cancel()


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


KINDS = {
    'integer': _is_int,
    'string': lambda v: isinstance(v, str),
    'boolean': lambda v: isinstance(v, bool),
    'object': lambda v: isinstance(v, dict),
    'array of strings': lambda v: isinstance(v, list) and all(
        isinstance(i, str) for i in v),
    'array of integers': lambda v: isinstance(v, list) and all(
        _is_int(i) for i in v),
    'object of integers': lambda v: isinstance(v, dict) and all(
        _is_int(i) for i in v.values()),
}


def check_fields(body, spec, prefix=''):
    """Reject unknown fields, missing required ones and wrong JSON types.

    ``spec`` maps a field to ``(kind, required, nullable)``.
    """
    for name in body:
        if name not in spec:
            raise BadRequest('unknown field %r; expected %s' % (
                name, ', '.join(sorted(spec))), prefix + name)
    for name, (kind, required, nullable) in spec.items():
        if name not in body:
            if required:
                raise BadRequest('missing field %r' % name, prefix + name)
            continue
        value = body[name]
        if value is None and nullable:
            continue
        if not KINDS[kind](value):
            raise BadRequest('%s must be %s %s, not %s' % (
                prefix + name, 'an' if kind[0] in 'aeiou' else 'a', kind,
                json.dumps(value)[:80]), prefix + name)
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                printable(text, prefix + name)
    return body


CONTROL = re.compile(r'[\x00-\x1f\x7f]')


def printable(text, name):
    """No identifier, address or name of this API has control characters
    (the model's ``^...$`` patterns would let a trailing newline through)."""
    if CONTROL.search(text):
        raise BadRequest('%s must not contain control characters' % name,
                         name)
    return text


GATEWAY = {'mac': ('string', False, True),
           'ips': ('array of strings', False, False)}


def gateway_args(body):
    """A request body's gateway as (MAC, interface addresses)."""
    gateway = body.get('gateway')
    if gateway is None:
        return None, ()
    check_fields(gateway, GATEWAY, 'gateway.')
    return gateway.get('mac'), tuple(gateway.get('ips') or ())


def int_text(text, name, low, high):
    """A path or query integer within ``low..high``."""
    if not re.fullmatch(r'[0-9]{1,19}', text):
        raise BadRequest('%s must be an integer %d..%d, not %r' % (
            name, low, high, text[:40]), name)
    value = int(text)
    if not low <= value <= high:
        raise BadRequest('%s must be an integer %d..%d, not %d' % (
            name, low, high, value), name)
    return value


NUMBER = re.compile(r'-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,16})?'
                    r'([eE][-+]?[0-9]{1,3})?')


def float_text(text, name, low, high):
    """A JSON-syntax number (no nan/inf) within ``low..high``."""
    value = float(text) if NUMBER.fullmatch(text) else None
    if value is None or not low <= value <= high:
        raise BadRequest('%s must be a number of seconds %g..%g, not %r' % (
            name, low, high, text[:40]), name)
    return value


def path_vnid(text):
    """The VNID of a path."""
    if not re.fullmatch(r'[0-9]{1,19}', text):
        raise BadRequest('vnid must be an integer 1..%d (24 bits), not %r'
                         % (addresses.VNID_MAX, text[:40]), 'vnid')
    return addresses.norm_vnid(int(text))


def path_dpid(text):
    """The datapath id of a path (16 hex digits)."""
    if not re.fullmatch(r'[0-9a-fA-F]{16}', text):
        raise BadRequest('dpid must be a datapath id of 16 hex digits, not '
                         '%r' % text[:40], 'dpid')
    return addresses.norm_dpid(text)


def path_port(text):
    """The access-port name of a path."""
    return addresses.norm_port_name(printable(text, 'port_name'))


def path_name(text):
    """The name of an interconnect or external network in a path."""
    return addresses.norm_name(printable(text, 'name'), 'name')


def query(req, spec):
    """Query parameters: ``spec`` maps a name to a parser of its text;
    unknown or repeated parameters are refused (``type`` may repeat)."""
    got = {}
    for name, value in req.GET.items():
        if name not in spec:
            raise BadRequest('unknown query parameter %r; expected %s' % (
                name, ', '.join(sorted(spec)) or 'none'), name)
        got.setdefault(name, []).append(value)
    out = {}
    for name, values in got.items():
        multi, parse = spec[name]
        if len(values) > 1 and not multi:
            raise BadRequest('query parameter %r given twice' % name, name)
        out[name] = parse(values if multi else values[0], name)
    return out


def bool_value(value, name):
    """A query parameter that is ``true`` or ``false``."""
    if value not in ('true', 'false'):
        raise BadRequest('%s must be true or false, not %r' % (
            name, value[:40]), name)
    return value == 'true'


def text_value(value, _name):
    """A query parameter's text as it is."""
    return value


def event_types(values, name):
    """The event types a ``type`` query parameter names (comma-separated,
    repeatable)."""
    kinds = set()
    for value in values:
        for kind in value.split(','):
            if kind not in EVENT_TYPES:
                raise BadRequest('%s must be event types among %s, not %r' % (
                    name, ', '.join(EVENT_TYPES), kind[:40]), name)
            kinds.add(kind)
    return kinds
