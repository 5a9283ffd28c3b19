"""Two run-time fixes to os-ken 3.1.1's BGP speaker, applied before it is
started (the installed package is never edited).

1. Export speed.  ``CircularListType.node_is_on_list`` tests ``next ==
   node``; a BGP Destination's ``==`` compares ``str()`` of both, and
   ``str()`` of a Destination stringifies its whole table through
   ``inspect.getmembers``.  It runs on every ``dest_changed()``, that is for
   every route exported or received: about three quarters of the speaker's
   CPU when exporting 10,000 routes.  "Linked to itself" means identity.
2. PMSI tunnel endpoint.  ``evpn_prefix_add(tunnel_endpoint_ip=...)`` is
   accepted, but ``TableCoreManager.update_vrf_table`` never hands it on,
   so every inclusive multicast route carries the router id as its
   tunnel endpoint instead of the NVE's VTEP (FRR takes the VTEP from the
   NLRI; other implementations read the PMSI attribute).

Both are guarded by version: on any other os-ken, :func:`apply` changes
nothing and says so (tests/unit/test_peering.py fails until they are
re-checked against it).
"""

import logging

import os_ken
from os_ken.services.protocols.bgp.core_managers import table_manager
from os_ken.services.protocols.bgp.utils import circlist

LOG = logging.getLogger(__name__)
FIXED_VERSION = '3.1.1'


def _node_is_on_list(self, node):
    nxt = self.node_next(node)
    return not (nxt is node or nxt is None)


def _with_endpoint(orig):
    def update_vrf_table(self, route_dist, *args, tunnel_endpoint_ip=None,
                         **kwargs):
        if tunnel_endpoint_ip is None:
            return orig(self, route_dist, *args, **kwargs)
        vrf_table = self._tables.get((route_dist, kwargs.get('route_family')))
        if vrf_table is None:
            return orig(self, route_dist, *args, **kwargs)
        real_insert = vrf_table.insert_vrf_path

        def insert_vrf_path(*a, **kw):
            kw['tunnel_endpoint_ip'] = tunnel_endpoint_ip
            return real_insert(*a, **kw)
        # One call at a time: the speaker's API is synchronous, no yield.
        vrf_table.insert_vrf_path = insert_vrf_path
        try:
            return orig(self, route_dist, *args, **kwargs)
        finally:
            del vrf_table.insert_vrf_path
    update_vrf_table.nvo3_fixed = True
    return update_vrf_table


def apply():
    """Apply both fixes once; returns whether they are in place."""
    if os_ken.__version__ != FIXED_VERSION:
        LOG.warning('os-ken %s: BGP run-time fixes written for %s not '
                    'applied (exports are slow, PMSI endpoint is the '
                    'router id)', os_ken.__version__, FIXED_VERSION)
        return False
    circlist.CircularListType.node_is_on_list = _node_is_on_list
    manager = table_manager.TableCoreManager
    if not getattr(manager.update_vrf_table, 'nvo3_fixed', False):
        manager.update_vrf_table = _with_endpoint(manager.update_vrf_table)
    return True


def applied():
    """Whether both fixes are in place."""
    return circlist.CircularListType.node_is_on_list is _node_is_on_list \
        and getattr(table_manager.TableCoreManager.update_vrf_table,
                    'nvo3_fixed', False)
