"""REST: the BGP EVPN speaker (contract 7)."""

from ...authority.errors import NotFound
from .parse import query
from .server import json_response, route


@route('GET', '/v1/bgp')
def bgp(api, req):
    """GET /v1/bgp: the speaker's AS, router id, sessions and route
    counts; 404 when BGP is off (no ``bgp_as``)."""
    query(req, {})
    status = getattr(api.ctl, 'bgp_status', lambda: None)()
    if status is None:
        raise NotFound('BGP is off: no bgp_as is configured', 'bgp_as')
    return json_response(200, status)
