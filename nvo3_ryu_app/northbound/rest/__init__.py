"""REST API v1 (see server.py); importing the package registers every
route of its resource modules."""

from . import (bgp, cluster, docs, events, gateways,  # noqa: F401
               migrations, nves, operate, status, vns)
from .server import (OPENAPI_PATH, HubNotifier, RestApp, Server,
                     ThreadNotifier, make_app, route_table)

__all__ = ['make_app', 'route_table', 'RestApp', 'Server', 'HubNotifier',
           'ThreadNotifier', 'OPENAPI_PATH']
