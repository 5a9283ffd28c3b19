"""REST: the cluster of authorities this instance belongs to."""

from .parse import query
from .server import json_response, route


@route('GET', '/v1/cluster')
def cluster(api, req):
    """GET /v1/cluster: this instance, the leader, the backend, every
    instance seen (alive or not) with the NVEs it masters, and etcd's
    health (docs/contracts.md, "Cluster").  Alone: one instance, the
    journal."""
    query(req, {})
    return json_response(200, api.ctl.cluster_status())
