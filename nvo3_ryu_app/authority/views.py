"""Read-only views of the mapping database for the interfaces.

REST, the registration RPC, metrics and the web view read through these;
they never change anything, so an interface may call them from its own
greenlet (a view never yields half-way).  Records returned (VN, NVE) are for
reading only: every write is a command (commands.py).
"""

import networkx as nx

from . import bids
from .addresses import dpid_str, norm_ip, norm_mac


class Views:
    """What the interfaces may read of one authority's state."""

    def __init__(self, db, settings, tables):
        self.db = db
        self.settings = settings
        self.tables = tables          # dpid -> that NVE's flow table

    # -- records --

    def get_vn(self, vnid):
        """The VN ``vnid`` (NotFound if none)."""
        return self.db.get_vn(vnid)

    def get_nve(self, dpid):
        """The NVE ``dpid`` (NotFound if none)."""
        return self.db.get_nve(dpid)

    def has_nve(self, dpid):
        """Whether NVE ``dpid`` is known."""
        return dpid in self.db.nves

    def vn_ids(self):
        """Every VNID, in order."""
        return sorted(self.db.vns)

    def nve_ids(self):
        """Every NVE's dpid, in order."""
        return sorted(self.db.nves)

    # -- VNs --

    def vn(self, vn):
        """A VN as REST shows it: its definition, member NVEs (draft 5.2)
        and how many tenant systems it has."""
        view = vn.to_dict()
        view['nves'] = [dpid_str(d) for d in sorted(self.db.members(
            vn.vnid))]
        view['tenant_systems'] = len(self.db.attachments_in(vn.vnid))
        return view

    def vns(self):
        """Every VN's view, by VNID."""
        return [self.vn(vn) for _, vn in sorted(self.db.vns.items())]

    def vn_members(self, vnid):
        """The VN's member NVEs with their VTEP and tenant-system count;
        then its EVPN VTEPs (``nve`` None, ``origin: evpn``): those whose
        inclusive multicast routes it imports, and those only its imported
        entries are behind."""
        vn = self.db.get_vn(vnid)
        out = [{'nve': dpid_str(d),
                'vtep_ip': self.db.nves[d].vtep_ip,
                'tenant_systems': self.db.count_at(vn.vnid, d)}
               for d in sorted(self.db.members(vn.vnid))]
        remote = self.db.remote_vteps(vn.vnid)
        flooded = self.db.evpn_vteps(vn.vnid)
        for vtep in sorted(set(remote) | flooded):
            out.append({'nve': None, 'vtep_ip': vtep,
                        'tenant_systems': remote.get(vtep, 0),
                        'origin': 'evpn', 'bum': vtep in flooded})
        return out

    def vn_mappings(self, vnid):
        """The VN's mapping table entries (draft section 4), by MAC."""
        vn = self.db.get_vn(vnid)
        out = []
        for att in sorted(self.db.attachments_in(vn.vnid),
                          key=lambda a: a.mac):
            out.extend(self.db.mapping_entries(att,
                                               self.settings.tunnel_ports))
        return out

    def find_mappings(self, mac=None, ip=None):
        """Mapping entries of every VN with this MAC and/or IP."""
        mac = norm_mac(mac) if mac is not None else None
        ip = norm_ip(ip) if ip is not None else None
        out = []
        for att in self.db.attachments.values():
            if mac is not None and att.mac != mac:
                continue
            if ip is not None and ip not in att.ips:
                continue
            out.extend(e for e in self.db.mapping_entries(
                att, self.settings.tunnel_ports)
                if ip is None or e['ip'] == ip)
        return sorted(out, key=lambda e: (e['vnid'], e['mac'], e['ip'] or ''))

    def tesid(self, vnid, mac):
        """The TESID <VN, NVE, tenant system> of ``mac`` in VN ``vnid``."""
        return self.db.tesid(vnid, mac)

    def registration(self, vnid, mac):
        """TESID, mapping entries and binding cache of a vNIC (RPC query)."""
        return bids.query(self.db, vnid, mac, self.settings.tunnel_ports)

    # -- NVEs --

    def nve(self, nve):
        """An NVE as REST shows it (without its channel's sync state)."""
        table = self.tables.get(nve.dpid)
        return {
            'dpid': dpid_str(nve.dpid), 'name': nve.name,
            'vtep_ip': nve.vtep_ip, 'nve_mac': nve.dyn_mac,
            'connected': nve.dyn_connected, 'origin': nve.origin,
            'can_tunnel': bool(nve.vtep_ip),
            'vns': sorted(self.db.vns_of(nve.dpid)),
            'ports': {name: dict(b.to_dict(), ofport=nve.ofport(name))
                      for name, b in sorted(nve.bindings.items())},
            'flows_desired': table.n_desired if table else 0,
            'flows_pending': table.pending if table else 0,
        }

    # -- figures for metrics --

    def vn_figures(self):
        """Per VN: (vnid, name, mapping entries, tenant systems, members)."""
        db = self.db
        for vnid, vn in sorted(db.vns.items()):
            atts = list(db.attachments_in(vnid))
            entries = sum(len(db.mapping_entries(
                a, self.settings.tunnel_ports)) for a in atts)
            yield vnid, vn.name, entries, len(atts), len(db.members(vnid))

    def nve_figures(self):
        """Per NVE: (dpid, connected, flows desired, flows pending)."""
        for dpid, nve in sorted(self.db.nves.items()):
            table = self.tables.get(dpid)
            yield (dpid, nve.dyn_connected,
                   table.n_desired if table else 0,
                   table.pending if table else 0)

    # -- the topology --

    def topology_graph(self):
        """VNs, NVEs and tenant systems as a networkx graph.

        Edges: ``member`` (VN-NVE, the draft's VN membership), ``attachment``
        (tenant system-NVE) and ``tunnel`` (between two member NVEs of one or
        more VNs; ``vnids`` lists them).
        """
        db = self.db
        graph = nx.Graph()
        for vnid, vn in sorted(db.vns.items()):
            graph.add_node('vn:%d' % vnid, kind='vn', vnid=vnid,
                           label=vn.name, name=vn.name, service=vn.service,
                           encap=vn.encap)
        for dpid, nve in sorted(db.nves.items()):
            graph.add_node('nve:' + dpid_str(dpid), kind='nve',
                           dpid=dpid_str(dpid),
                           label=nve.name or dpid_str(dpid), name=nve.name,
                           vtep_ip=nve.vtep_ip, connected=nve.dyn_connected)
        # EVPN VTEPs are drawn as NVEs of their own (``evpn: true``).
        for vnid in sorted(db.vns):
            for vtep in set(db.remote_vteps(vnid)) | db.evpn_vteps(vnid):
                graph.add_node('evpn:' + vtep, kind='nve', dpid=None,
                               label='EVPN ' + vtep, name=None, vtep_ip=vtep,
                               connected=True, evpn=True)
        for (vnid, mac), att in sorted(db.attachments.items()):
            node = 'ts:%d:%s' % (vnid, mac)
            graph.add_node(node, kind='ts', vnid=vnid, mac=mac, label=mac,
                           ips=sorted(att.ips), origin=att.source)
            where = 'evpn:' + att.port if att.nve is None else \
                'nve:' + dpid_str(att.nve)
            graph.add_edge(node, where,
                           kind='attachment', port=att.port, vlan=att.vlan,
                           vnid=vnid)
        for vnid in sorted(db.vns):
            counts = {'nve:' + dpid_str(d): db.count_at(vnid, d)
                      for d in db.members(vnid)}
            remote = db.remote_vteps(vnid)
            counts.update(('evpn:' + vtep, remote.get(vtep, 0))
                          for vtep in set(remote) | db.evpn_vteps(vnid))
            members = sorted(counts)
            for node in members:
                graph.add_edge('vn:%d' % vnid, node, kind='member',
                               tenant_systems=counts[node])
            for i, a in enumerate(members):
                for b in members[i + 1:]:
                    if a.startswith('evpn:') and b.startswith('evpn:'):
                        continue        # theirs, not ours to draw
                    ends = (a, b)
                    if graph.has_edge(*ends):
                        graph.edges[ends]['vnids'].append(vnid)
                    else:
                        graph.add_edge(*ends, kind='tunnel', vnids=[vnid])
        return graph
