"""REST: NVEs and their access-port bindings."""

import re

from ...authority import commands as C
from ...authority.addresses import dpid_str
from ...authority.errors import BadRequest, NotFound
from .parse import check_fields, path_dpid, path_port, query, read_body
from .server import json_response, route


NVE_PUT = {'vtep_ip': ('string', False, False),
           'name': ('string', False, False)}
PORT_PUT = {'vnid': ('integer', False, False),
            'vlans': ('object of integers', False, False)}


@route('GET', '/v1/nves')
def list_nves(api, req):
    """GET /v1/nves: every NVE with its sync state."""
    query(req, {})
    return json_response(200, [api.nve_view(api.views.get_nve(dpid))
                               for dpid in api.views.nve_ids()])


@route('GET', '/v1/nves/{dpid}')
def get_nve(api, req, dpid):
    """GET /v1/nves/{dpid}: one NVE."""
    query(req, {})
    return json_response(200, api.nve_view(api.views.get_nve(
        path_dpid(dpid))))


@route('PUT', '/v1/nves/{dpid}')
def put_nve(api, req, dpid):
    """PUT /v1/nves/{dpid}: register an NVE (201) or change it (200)."""
    query(req, {})
    dpid = path_dpid(dpid)
    body = check_fields(read_body(req), NVE_PUT)
    existed = api.views.has_nve(dpid)
    nve = api.execute(C.RegisterNVE(dpid, body.get('vtep_ip'),
                                    body.get('name')))
    return json_response(200 if existed else 201, api.nve_view(nve))


@route('DELETE', '/v1/nves/{dpid}')
def delete_nve(api, req, dpid):
    """DELETE /v1/nves/{dpid}: forget an NVE (its bindings and tenant
    systems go, its peers stop tunnelling to it); a connected switch is
    disconnected, and may come back only as an unknown NVE."""
    query(req, {})
    api.execute(C.DeleteNVE(path_dpid(dpid)))
    return json_response(204, None)


@route('PUT', '/v1/nves/{dpid}/ports/{port_name}')
def bind_port(api, req, dpid, port_name):
    """PUT /v1/nves/{dpid}/ports/{port_name}: bind an access port (201) or
    change its binding (200)."""
    query(req, {})
    dpid, port = path_dpid(dpid), path_port(port_name)
    body = check_fields(read_body(req), PORT_PUT)
    if ('vnid' in body) == ('vlans' in body):
        raise BadRequest('give either "vnid" (whole port) or "vlans" '
                         '(VLAN ID -> VNID)', 'vnid')
    for vlan in body.get('vlans') or {}:
        if not re.fullmatch(r'[0-9]{1,4}', vlan):
            raise BadRequest('vlans keys must be VLAN IDs 1..4094, not %r'
                             % vlan[:40], 'vlans')
    nve = api.views.get_nve(dpid)
    existed = port in nve.bindings
    binding = api.execute(C.BindPort(dpid, port, vnid=body.get('vnid'),
                                     vlans=body.get('vlans')))
    view = dict(binding.to_dict(), nve=dpid_str(dpid), port=port)
    return json_response(200 if existed else 201, view)


@route('DELETE', '/v1/nves/{dpid}/ports/{port_name}')
def unbind_port(api, req, dpid, port_name):
    """DELETE /v1/nves/{dpid}/ports/{port_name}: remove a binding."""
    query(req, {})
    dpid, port = path_dpid(dpid), path_port(port_name)
    nve = api.views.get_nve(dpid)
    if port not in nve.bindings:
        raise NotFound('port %s of NVE %s is not bound' % (
            port, dpid_str(dpid)), 'port_name')
    api.execute(C.UnbindPort(dpid, port))
    return json_response(204, None)
