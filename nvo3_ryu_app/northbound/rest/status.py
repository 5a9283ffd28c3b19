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
    in_sync = all(s['in_sync'] for s in nves.values()
                  if s['connected'] and s.get('role', 'master') == 'master')
    return json_response(200, {'in_sync': in_sync, 'nves': nves})


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
