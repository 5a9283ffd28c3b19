"""REST: acknowledged state (sync), the topology graph, audits."""

import networkx as nx

from ...authority.addresses import dpid_str
from ...authority.errors import Conflict
from .parse import path_dpid, query
from .server import json_response, route


@route('GET', '/v1/sync')
def sync(api, req):
    """Acknowledged state: every connected NVE applied all its changes (in
    a cluster: every NVE this instance masters; another instance answers
    for the others)."""
    query(req, {})
    nves = {dpid_str(d): api.ctl.sync_status(d)
            for d in api.views.nve_ids()}
    connected = [s for s in nves.values() if s['connected']]
    down = sorted(d for d, s in nves.items() if not s['connected'])
    # In a cluster an NVE is kept in sync by its master instance: this
    # instance answers for the NVEs it is master of.
    behind = sorted(d for d, s in nves.items()
                    if s['connected'] and not s['in_sync']
                    and s.get('role', 'master') == 'master')
    if not connected:
        reason = 'no NVE is connected' if nves else 'no NVE is known'
    elif behind:
        reason = '%d connected NVE(s) not in sync: %s' % (
            len(behind), ', '.join(behind[:10]))
    else:
        reason = None
    return json_response(200, {
        'in_sync': reason is None, 'reason': reason,
        'connected': len(connected), 'down': down, 'nves': nves,
        'states': {d: sync_state(s) for d, s in nves.items()},
        'names': {dpid_str(d): api.views.get_nve(d).name
                  for d in api.views.nve_ids()}})


def sync_state(status):
    """One word for an NVE's flows: ``down`` (not connected: nothing is
    being synced), ``dumping`` (its flows are being read), ``syncing``
    (changes on their way), ``failed`` (it refused some), ``in-sync``."""
    if not status['connected']:
        return 'down'
    if not status['synced']:
        return 'dumping'
    if status['in_sync']:
        return 'in-sync'
    return 'failed' if status.get('failed') else 'syncing'


@route('GET', '/v1/topology')
def topology(api, req):
    """GET /v1/topology: VNs, NVEs and tenant systems as node-link data."""
    query(req, {})
    return json_response(200, nx.node_link_data(
        api.views.topology_graph(), edges='edges'))


@route('GET', '/v1/nves/{dpid}/audit')
def audit_nve(api, req, dpid):
    """Dump the NVE's flows now and compare them with what the database
    implies (law 5); differences found are repaired, and reported here."""
    query(req, {})
    nve = api.views.get_nve(path_dpid(dpid))
    result = api.ctl.audit_now(nve.dpid)
    if result is None:
        raise Conflict('NVE %s is not connected (or did not answer the '
                       'dump)' % dpid_str(nve.dpid), 'dpid')
    return json_response(200, result)
