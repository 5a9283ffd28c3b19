"""REST: announced live migrations of a VN's vNICs (authority/migrations.py).

``POST /v1/vns/{vnid}/migrations`` says a vNIC is about to appear at
another NVE port (the RPC's ``migrate``); GET shows those under way and
DELETE calls one off (the old place stays as it was).
"""

import re

from ...authority import addresses
from ...authority import commands as C
from ...authority.errors import BadRequest
from .parse import check_fields, path_vnid, printable, query, read_body
from .server import json_response, route

MIGRATION_POST = {'mac': ('string', True, False),
                  'nve': ('string', True, False),
                  'port': ('string', True, False),
                  'vlan': ('integer', False, True)}


def _path_mac(text):
    return addresses.norm_mac(printable(text, 'mac'))


@route('GET', '/v1/vns/{vnid}/migrations')
def list_migrations(api, req, vnid):
    """GET /v1/vns/{vnid}/migrations: the VN's migrations under way."""
    query(req, {})
    return json_response(200, api.views.migrations(path_vnid(vnid)))


@route('POST', '/v1/vns/{vnid}/migrations')
def start_migration(api, req, vnid):
    """POST /v1/vns/{vnid}/migrations: announce a migration (201), or
    announce it again to the same place (200: its deadline starts over)."""
    query(req, {})
    vnid = path_vnid(vnid)
    body = check_fields(read_body(req), MIGRATION_POST)
    if not re.fullmatch(r'[0-9a-fA-F]{16}', body['nve']):
        raise BadRequest('nve must be a datapath id of 16 hex digits, not '
                         '%r' % body['nve'][:40], 'nve')
    api.views.get_vn(vnid)          # 404 before the command
    done = api.execute(C.Migrate(body['nve'], body['port'], body['mac'],
                                 vnid, vlan=body.get('vlan')))
    view = {k: v for k, v in done.items() if k != 'action'}
    if done['action'] == 'renewed':
        return json_response(200, view)
    return json_response(201, view, [(
        'Location', '/v1/vns/%d/migrations/%s' % (vnid, view['mac']))])


@route('GET', '/v1/vns/{vnid}/migrations/{mac}')
def get_migration(api, req, vnid, mac):
    """GET /v1/vns/{vnid}/migrations/{mac}: one migration under way."""
    query(req, {})
    return json_response(200, api.views.migration(path_vnid(vnid),
                                                  _path_mac(mac)))


@route('DELETE', '/v1/vns/{vnid}/migrations/{mac}')
def cancel_migration(api, req, vnid, mac):
    """DELETE /v1/vns/{vnid}/migrations/{mac}: call a migration off."""
    query(req, {})
    vnid, mac = path_vnid(vnid), _path_mac(mac)
    api.views.migration(vnid, mac)  # 404 before the command
    api.execute(C.CancelMigration(vnid, mac))
    return json_response(204, None)
