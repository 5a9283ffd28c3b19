"""REST: VNs, their members and mapping entries, TESIDs."""

from ...authority import commands as C
from ...authority.errors import BadRequest
from .parse import (check_fields, gateway_args, path_vnid, query, read_body,
                    text_value)
from .server import json_response, route


VN_CREATE = {'vnid': ('integer', True, False), 'name': ('string', True, False),
             'service': ('string', False, False),
             'encap': ('string', False, False),
             'gateway': ('object', False, True),
             'evpn': ('boolean', False, False),
             'route_targets': ('array of strings', False, False)}
VN_UPDATE = {'name': ('string', False, False),
             'service': ('string', False, False),
             'encap': ('string', False, False),
             'gateway': ('object', False, True),
             'evpn': ('boolean', False, False),
             'route_targets': ('array of strings', False, False)}


@route('GET', '/v1/vns')
def list_vns(api, req):
    """GET /v1/vns: every VN."""
    query(req, {})
    return json_response(200, api.views.vns())


@route('POST', '/v1/vns')
def create_vn(api, req):
    """POST /v1/vns: create a VN."""
    query(req, {})
    body = check_fields(read_body(req), VN_CREATE)
    gw_mac, gw_ips = gateway_args(body)
    vn = api.execute(C.CreateVN(
        body['vnid'], body['name'], body.get('service', 'l2'),
        body.get('encap', 'vxlan'), gw_mac, gw_ips,
        evpn=body.get('evpn', False),
        route_targets=tuple(body.get('route_targets', ()))))
    return json_response(201, api.views.vn(vn),
                         [('Location', '/v1/vns/%d' % vn.vnid)])


@route('GET', '/v1/vns/{vnid}')
def get_vn(api, req, vnid):
    """GET /v1/vns/{vnid}: one VN."""
    query(req, {})
    return json_response(200, api.views.vn(api.views.get_vn(
        path_vnid(vnid))))


@route('PATCH', '/v1/vns/{vnid}')
def update_vn(api, req, vnid):
    """PATCH /v1/vns/{vnid}: change a VN's name, service, encapsulation,
    gateway or BGP EVPN part."""
    query(req, {})
    vnid = path_vnid(vnid)
    body = read_body(req)
    if 'vnid' in body:
        raise BadRequest('vnid cannot be changed; delete and create',
                         'vnid')
    check_fields(body, VN_UPDATE)
    changes = {k: body[k] for k in ('name', 'service', 'encap', 'evpn',
                                    'route_targets') if k in body}
    if 'gateway' in body:
        changes['gateway_mac'], changes['gateway_ips'] = gateway_args(body)
    api.views.get_vn(vnid)          # 404 before the command
    vn = api.execute(C.UpdateVN(vnid, changes))
    return json_response(200, api.views.vn(vn))


@route('DELETE', '/v1/vns/{vnid}')
def delete_vn(api, req, vnid):
    """DELETE /v1/vns/{vnid}: delete a VN."""
    query(req, {})
    vnid = path_vnid(vnid)
    api.views.get_vn(vnid)
    api.execute(C.DeleteVN(vnid))
    return json_response(204, None)


@route('GET', '/v1/vns/{vnid}/members')
def vn_members(api, req, vnid):
    """GET /v1/vns/{vnid}/members: the VN's member NVEs."""
    query(req, {})
    return json_response(200, api.views.vn_members(path_vnid(vnid)))


@route('GET', '/v1/vns/{vnid}/mappings')
def vn_mappings(api, req, vnid):
    """GET /v1/vns/{vnid}/mappings: the VN's mapping table entries."""
    query(req, {})
    return json_response(200, [api.mapping_view(e) for e in
                               api.views.vn_mappings(path_vnid(vnid))])


@route('GET', '/v1/mappings')
def find_mappings(api, req):
    """GET /v1/mappings: mapping entries of every VN, by MAC and/or IP."""
    args = query(req, {'mac': (False, text_value), 'ip': (False, text_value)})
    entries = api.views.find_mappings(args.get('mac'), args.get('ip'))
    return json_response(200, [api.mapping_view(e) for e in entries])


@route('GET', '/v1/tesid')
def tesid(api, req):
    """GET /v1/tesid: the TESID of a tenant system."""
    args = query(req, {'vnid': (False, text_value),
                       'mac': (False, text_value)})
    for name in ('vnid', 'mac'):
        if name not in args:
            raise BadRequest('query parameter %r is required' % name, name)
    vnid = path_vnid(args['vnid'])
    return json_response(200, api.views.tesid(vnid, args['mac']))
