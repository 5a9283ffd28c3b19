"""REST API v1 (see server.py); importing the package registers every
route of its resource modules."""

from . import bgp, docs, events, nves, status, vns  # noqa: F401 (routes)
from .server import (OPENAPI_PATH, HubNotifier, RestApp, Server,
                     ThreadNotifier, make_app, route_table)

__all__ = ['make_app', 'route_table', 'RestApp', 'Server', 'HubNotifier',
           'ThreadNotifier', 'OPENAPI_PATH']
