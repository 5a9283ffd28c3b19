"""REST: interconnection functionality (draft 4.3): interconnects between
VNs and external networks on gateway NVEs (docs/contracts.md)."""

import re

from ...authority import commands as C
from ...authority.errors import BadRequest
from .parse import check_fields, path_name, query, read_body
from .server import json_response, route

IC_PUT = {'gateway': ('string', True, False),
          'vns': ('array of integers', True, False),
          'allowed_macs': ('array of strings', False, False),
          'router': ('object', False, True)}
ROUTER = {'ip': ('string', True, False), 'mac': ('string', True, False)}
EXT_PUT = {'gateway': ('string', True, False),
           'port': ('string', True, False),
           'vnid': ('integer', False, False),
           'vlans': ('object of integers', False, False),
           'allowed_macs': ('array of strings', False, False)}


def _ids(keys, name, what):
    for key in keys:
        if not re.fullmatch(r'[0-9]{1,9}', key):
            raise BadRequest('%s keys must be %s, not %r' % (
                name, what, key[:40]), name)


@route('GET', '/v1/interconnects')
def list_interconnects(api, req):
    """GET /v1/interconnects: every interconnect."""
    query(req, {})
    return json_response(200, api.views.interconnects())


@route('GET', '/v1/interconnects/{name}')
def get_interconnect(api, req, name):
    """GET /v1/interconnects/{name}: one interconnect."""
    query(req, {})
    return json_response(200, api.views.interconnect(
        api.views.get_interconnect(path_name(name))))


@route('PUT', '/v1/interconnects/{name}')
def put_interconnect(api, req, name):
    """PUT /v1/interconnects/{name}: create (201) or replace (200) an
    interconnect between two VNs on a gateway NVE."""
    query(req, {})
    name = path_name(name)
    body = check_fields(read_body(req), IC_PUT)
    router = body.get('router')
    if router:
        _ids(router, 'router', 'VNIDs')
        for key, value in router.items():
            if not isinstance(value, dict):
                raise BadRequest('router.%s must be {"ip", "mac"}' % key,
                                 'router')
            check_fields(value, ROUTER, 'router.%s.' % key)
    existed = api.views.has_interconnect(name)
    ic = api.execute(C.PutInterconnect(
        name, body['gateway'], tuple(body['vns']),
        tuple(body.get('allowed_macs') or ()), router))
    return json_response(200 if existed else 201, api.views.interconnect(ic),
                         [('Location', '/v1/interconnects/%s' % ic.name)])


@route('DELETE', '/v1/interconnects/{name}')
def delete_interconnect(api, req, name):
    """DELETE /v1/interconnects/{name}: remove an interconnect (its flows
    leave every NVE)."""
    query(req, {})
    ic = api.views.get_interconnect(path_name(name))
    api.execute(C.DeleteInterconnect(ic.name))
    return json_response(204, None)


@route('GET', '/v1/externals')
def list_externals(api, req):
    """GET /v1/externals: every external network."""
    query(req, {})
    return json_response(200, api.views.externals())


@route('GET', '/v1/externals/{name}')
def get_external(api, req, name):
    """GET /v1/externals/{name}: one external network and its hosts."""
    query(req, {})
    return json_response(200, api.views.external(
        api.views.get_external(path_name(name))))


@route('PUT', '/v1/externals/{name}')
def put_external(api, req, name):
    """PUT /v1/externals/{name}: create (201) or replace (200) an external
    network on a port of a gateway NVE."""
    query(req, {})
    name = path_name(name)
    body = check_fields(read_body(req), EXT_PUT)
    if ('vnid' in body) == ('vlans' in body):
        raise BadRequest('give either "vnid" (untagged) or "vlans" (VLAN ID '
                         '-> VNID)', 'vnid')
    _ids(body.get('vlans') or {}, 'vlans', 'VLAN IDs 1..4094')
    existed = api.views.has_external(name)
    ext = api.execute(C.PutExternal(
        name, body['gateway'], body['port'], vnid=body.get('vnid'),
        vlans=body.get('vlans'),
        allowed_macs=tuple(body.get('allowed_macs') or ())))
    return json_response(200 if existed else 201, api.views.external(ext),
                         [('Location', '/v1/externals/%s' % ext.name)])


@route('DELETE', '/v1/externals/{name}')
def delete_external(api, req, name):
    """DELETE /v1/externals/{name}: remove an external network (its hosts
    detach, its flows leave the gateway)."""
    query(req, {})
    ext = api.views.get_external(path_name(name))
    api.execute(C.DeleteExternal(ext.name))
    return json_response(204, None)
