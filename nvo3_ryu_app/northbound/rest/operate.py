"""REST: operators' questions, answered without changing anything.

``GET /v1/trace`` explains a frame's fate on the flows the authority holds
(southbound/trace.py, through the controller); ``GET /v1/cookies/{cookie}``
says which record a flow's cookie names.  Dry runs of writes need no route
of their own: any write takes ``?dry_run=true`` (server.py).
"""

import re

from ...authority.errors import BadRequest
from .parse import query, text_value
from .server import json_response, route

TRACE_QUERY = {'vn': (False, text_value), 'src': (False, text_value),
               'dst': (False, text_value), 'kind': (False, text_value),
               'at': (False, text_value)}


@route('GET', '/v1/trace')
def trace(api, req):
    """GET /v1/trace?vn=&src=&dst=[&kind=][&at=NVE:PORT]: a frame's way
    through the NVEs, in the draft's terms."""
    args = query(req, TRACE_QUERY)
    for name in ('vn', 'src', 'dst'):
        if name not in args:
            raise BadRequest('query parameter %r is required' % name, name)
    at = None
    if 'at' in args:
        nve, sep, port = args['at'].rpartition(':')
        if not sep or not nve or not port:
            raise BadRequest('at must be NVE:PORT (an NVE\'s name or dpid, '
                             'an access port)', 'at')
        at = (api.views.resolve_nve(nve), port)
    return json_response(200, api.ctl.trace(
        args['vn'], args['src'], args['dst'], args.get('kind', 'auto'), at))


@route('GET', '/v1/cookies/{cookie}')
def cookie(api, req, cookie):
    """GET /v1/cookies/{cookie}: the owner a flow cookie names (hex)."""
    query(req, {})
    if not re.fullmatch(r'(0x)?[0-9a-fA-F]{1,16}', cookie):
        raise BadRequest('cookie must be a hexadecimal number of 64 bits at '
                         'most (0x4e56...), not %r' % cookie[:40], 'cookie')
    return json_response(200, api.views.cookie(int(cookie, 16)))
