"""Read-only views of the mapping database for the interfaces.

REST, the registration RPC, metrics and the web view read through these;
they never change anything, so an interface may call them from its own
greenlet (a view never yields half-way).  Records returned (VN, NVE) are for
reading only: every write is a command (commands.py).
"""

import re

import networkx as nx

from . import bids, migrations
from . import interconnect as I
from . import pipeline as P
from .addresses import dpid_str, norm_dpid, norm_ip, norm_mac, norm_name
from .errors import BadRequest, NotFound
from .owners import EXT, IC, IC_HOST, KIND_BITS, NVE, TS, VN, ExtOwner, \
    IcOwner, NveOwner, TsOwner, VnOwner, cookie_for


DPID_RE = re.compile(r'[0-9a-fA-F]{16}')


class Views:
    """What the interfaces may read of one authority's state."""

    def __init__(self, db, settings, tables, traffic=None):
        self.db = db
        self.settings = settings
        self.tables = tables          # dpid -> that NVE's flow table
        self.traffic = traffic or I.Traffic()   # through the gateways

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
        """The VN's mapping table entries (draft section 4), by MAC: its
        tenant systems', then the allowed MACs of other VNs that its l2 +
        l2 interconnects make entries of it, at the gateway (draft 7.3)."""
        vn = self.db.get_vn(vnid)
        out = []
        for att in sorted(self.db.attachments_in(vn.vnid),
                          key=lambda a: a.mac):
            out.extend(self.db.mapping_entries(att,
                                               self.settings.tunnel_ports))
        for mac, (ic, att) in sorted(I.imports(self.db, vn.vnid).items()):
            gateway = self.db.nves[ic.gateway]
            base = {'vnid': vn.vnid, 'mac': mac, 'vlan': None, 'bid': None,
                    'nve': dpid_str(gateway.dpid),
                    'nve_ip': gateway.vtep_ip, 'nve_mac': gateway.dyn_mac,
                    'port': None, 'seq': att.seq, 'source': 'interconnect',
                    'reachable': att.reachable, 'external': None,
                    'interconnect': ic.name,
                    'tunnel_if_id': '%s@%s' % (
                        self.settings.tunnel_ports[vn.encap],
                        gateway.vtep_ip) if gateway.vtep_ip else None}
            out.extend(dict(base, ip=ip) for ip in sorted(att.ips) or [None])
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

    # -- announced migrations --

    def migrations(self, vnid=None):
        """The migrations under way (of VN ``vnid`` if given: NotFound for
        an unknown VN), by VN and MAC."""
        db = self.db
        if vnid is not None:
            vnid = db.get_vn(vnid).vnid
        return [migrations.view(db.attachments[key])
                for key in sorted(db.migrating)
                if vnid is None or key[0] == vnid]

    def migration(self, vnid, mac):
        """The migration of ``mac`` in VN ``vnid`` (NotFound if none)."""
        vnid = self.db.get_vn(vnid).vnid
        att = self.db.attachments.get((vnid, norm_mac(mac)))
        if att is None or att.migration is None:
            raise NotFound('no migration of %s in VN %d' % (mac, vnid),
                           'mac')
        return migrations.view(att)

    def migrations_pending(self):
        """How many migrations are under way (metrics)."""
        return len(self.db.migrating)

    # -- NVEs --

    def nve(self, nve):
        """An NVE as REST shows it (without its channel's sync state)."""
        table = self.tables.get(nve.dpid)
        return {
            'dpid': dpid_str(nve.dpid), 'name': nve.name, 'role': nve.role,
            'vtep_ip': nve.vtep_ip, 'nve_mac': nve.dyn_mac,
            'connected': nve.dyn_connected, 'origin': nve.origin,
            'can_tunnel': bool(nve.vtep_ip),
            'vns': sorted(self.db.vns_of(nve.dpid)),
            'ports': {name: dict(b.to_dict(), ofport=nve.ofport(name))
                      for name, b in sorted(nve.bindings.items())},
            'flows_desired': table.n_desired if table else 0,
            'flows_pending': table.pending if table else 0,
        }

    def resolve_nve(self, text):
        """The dpid an NVE is named by in ``text``: its datapath id (16 hex
        digits), or its name (names are unique, and never 16 hex digits,
        so a text names one NVE at most).  NotFound if none."""
        if DPID_RE.fullmatch(text or ''):
            return norm_dpid(text)
        found = [d for d, nve in self.db.nves.items() if nve.name == text]
        if not found:
            raise NotFound('no NVE named %r (give its name or its datapath '
                           'id of 16 hex digits)' % (text or '')[:40], 'dpid')
        return found[0]

    def has_names(self):
        """Whether any NVE has a name."""
        return any(nve.name for nve in self.db.nves.values())

    def nve_label(self, dpid):
        """``hv1`` (its name), or its dpid when it has none."""
        nve = self.db.nves.get(dpid)
        return nve.name if nve is not None and nve.name else dpid_str(dpid)

    def resolve_vn(self, text):
        """The VNID a VN is named by in ``text``: its VNID or its name."""
        text = str(text)
        if text.isascii() and text.isdigit() and int(text) in self.db.vns:
            return int(text)
        for vn in self.db.vns.values():
            if vn.name == text:
                return vn.vnid
        raise NotFound('no VN %r (give its VNID or its name)' % text[:40],
                       'vn')

    # -- cookies --

    def cookie(self, cookie):
        """Who put a flow with ``cookie`` there: the owner record it names
        (the NVE itself, a VN on its members, or one tenant system), found
        by looking the cookie's CRC up among the current owners.  A cookie
        of ours that names no current owner is ``unknown / stale`` (its
        owner is gone, or the flow was put there by someone else)."""
        if not isinstance(cookie, int) or not 0 <= cookie < 1 << 64:
            raise BadRequest('a cookie is a 64-bit number, not %r'
                             % (cookie,), 'cookie')
        out = {'cookie': '0x%016x' % cookie,
               'ours': cookie & P.COOKIE_APP_MASK == P.COOKIE_APP,
               'kind': None, 'known': False, 'owner': None,
               'text': None}
        if not out['ours']:
            out['text'] = 'not ours: no 0x4e56 in the top 16 bits'
            return out
        bits = (cookie >> 40) & 0xFF
        kind = {v: k for k, v in KIND_BITS.items()}.get(bits)
        out['kind'] = kind
        owner = None
        if kind == NVE:
            owner = NveOwner() if cookie == cookie_for(NveOwner()) else None
        elif kind == VN:
            owner = next((VnOwner(v) for v in self.db.vns
                          if cookie_for(VnOwner(v)) == cookie), None)
        elif kind == TS:
            owner = next((TsOwner(*key) for key in self.db.attachments
                          if cookie_for(TsOwner(*key)) == cookie), None)
        elif kind in (IC, IC_HOST):
            out['kind'] = kind = IC      # its host routes carry its cookie
            owner = next((IcOwner(n) for n in self.db.interconnects
                          if cookie_for(IcOwner(n)) == cookie), None)
        elif kind == EXT:
            owner = next((ExtOwner(n) for n in self.db.externals
                          if cookie_for(ExtOwner(n)) == cookie), None)
        if owner is None:
            out['text'] = 'unknown / stale: no current %s has this cookie' \
                % (kind or 'owner kind %d' % bits)
            return out
        out['known'] = True
        out['owner'] = self.owner(owner)
        out['text'] = out['owner']['text']
        return out

    def owner(self, owner, dpid=None):
        """An owner in the draft's terms: what it is and what it names
        (``dpid``: the NVE whose flow it is, for the text)."""
        where = ' on %s' % self.nve_label(dpid) if dpid is not None else ''
        if owner.kind == NVE:
            return {'kind': NVE, 'text': 'the NVE itself%s (table misses, '
                    'punts of bound ports, meters)' % where}
        if owner.kind in (IC, IC_HOST):
            return {'kind': IC, 'name': owner.name,
                    'text': 'interconnect %s%s (draft 4.3: its gateway\'s '
                            'conversion and routes, its VNs\' way to the '
                            'gateway)' % (owner.name, where)}
        if owner.kind == EXT:
            return {'kind': EXT, 'name': owner.name,
                    'text': 'external network %s%s (its gateway port\'s '
                            'classification)' % (owner.name, where)}
        vn = self.db.vns.get(owner.vnid)
        vn_text = 'VN %d%s' % (owner.vnid, ' (%s)' % vn.name if vn else '')
        if owner.kind == VN:
            return {'kind': VN, 'vnid': owner.vnid,
                    'text': '%s%s: VN membership (tunnel and access '
                            'classification, BUM replication to member NVEs)'
                            % (vn_text, where)}
        att = self.db.attachments.get((owner.vnid, owner.mac))
        out = {'kind': TS, 'vnid': owner.vnid, 'mac': owner.mac}
        if att is None:
            out['text'] = 'tenant system %s of %s%s (gone)' % (
                owner.mac, vn_text, where)
            return out
        out.update(nve=dpid_str(att.nve), port=att.port,
                   ips=sorted(att.ips))
        out['text'] = 'mapping entry of tenant system %s%s in %s, at %s ' \
            'port %s%s' % (owner.mac, ' ' + ','.join(sorted(att.ips))
                           if att.ips else '', vn_text,
                           self.nve_label(att.nve), att.port, where)
        return out

    # -- interconnection functionality (draft 4.3) --

    def get_interconnect(self, name):
        """Interconnect ``name`` (NotFound if none)."""
        ic = self.db.interconnects.get(norm_name(name, 'name'))
        if ic is None:
            raise NotFound('no interconnect %r' % (name,), 'name')
        return ic

    def has_interconnect(self, name):
        """Whether interconnect ``name`` exists."""
        return name in self.db.interconnects

    def interconnect(self, ic):
        """An interconnect as REST shows it: its definition, its kind
        (the draft's case), and what crossed it at its gateway."""
        return {'name': ic.name, 'gateway': dpid_str(ic.gateway),
                'vns': list(ic.vns), 'kind': I.kind(self.db, ic),
                'allowed_macs': list(ic.allowed_macs),
                'router': {str(vnid): {'ip': iface, 'mac': mac}
                           for vnid, (iface, mac) in sorted(
                               ic.router.items())},
                'origin': ic.origin,
                'traffic': self.traffic.of(ic.name)}

    def interconnects(self):
        """Every interconnect's view, by name."""
        return [self.interconnect(ic)
                for _, ic in sorted(self.db.interconnects.items())]

    def get_external(self, name):
        """External network ``name`` (NotFound if none)."""
        ext = self.db.externals.get(norm_name(name, 'name'))
        if ext is None:
            raise NotFound('no external network %r' % (name,), 'name')
        return ext

    def has_external(self, name):
        """Whether external network ``name`` exists."""
        return name in self.db.externals

    def external(self, ext):
        """An external network as REST shows it, with its hosts (the
        mapping entries learned on its port)."""
        nve = self.db.nves[ext.gateway]
        view = {'name': ext.name, 'gateway': dpid_str(ext.gateway),
                'port': ext.port, 'ofport': nve.ofport(ext.port),
                'allowed_macs': list(ext.allowed_macs),
                'origin': ext.origin}
        if ext.vnid is not None:
            view['vnid'] = ext.vnid
        else:
            view['vlans'] = {str(k): v for k, v in sorted(ext.vlans.items())}
        view['hosts'] = [
            {'mac': att.mac, 'vnid': att.vnid, 'vlan': att.vlan,
             'ips': sorted(att.ips),
             'allowed': att.mac in ext.allowed_macs}
            for att in sorted(self.db.attachments_at(ext.gateway),
                              key=lambda a: (a.vnid, a.mac))
            if att.port == ext.port]
        return view

    def externals(self):
        """Every external network's view, by name."""
        return [self.external(ext)
                for _, ext in sorted(self.db.externals.items())]

    def interconnect_figures(self):
        """Per interconnect: (name, gateway dpid, kind, frames, bytes)."""
        for name, ic in sorted(self.db.interconnects.items()):
            traffic = self.traffic.of(name)
            yield (name, ic.gateway, I.kind(self.db, ic), traffic['frames'],
                   traffic['bytes'])

    # -- figures for metrics --

    def vn_figures(self):
        """Per VN: (vnid, name, mapping entries, tenant systems, members)."""
        db = self.db
        for vnid, vn in sorted(db.vns.items()):
            atts = list(db.attachments_in(vnid))
            entries = sum(len(db.mapping_entries(
                a, self.settings.tunnel_ports)) for a in atts)
            yield vnid, vn.name, entries, len(atts), len(db.members(vnid))

    def frozen_addresses(self, now):
        """Per VN: (vnid, name, tenant systems whose address is frozen at
        ``now`` because it moved too often)."""
        db = self.db
        for vnid, vn in sorted(db.vns.items()):
            yield vnid, vn.name, sum(
                1 for a in db.attachments_in(vnid)
                if (getattr(a, 'frozen_until', None) or 0) > now)

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
                           vtep_ip=nve.vtep_ip, connected=nve.dyn_connected,
                           role=nve.role)
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
        self._gateway_graph(graph)
        return graph

    def _gateway_graph(self, graph):
        """Interconnects (a node joined to its two VNs and its gateway)
        and external networks (a node joined to its gateway and VNs)."""
        db = self.db
        for name, ic in sorted(db.interconnects.items()):
            node = 'ic:' + name
            graph.add_node(node, kind='interconnect', name=name, label=name,
                           ic_kind=I.kind(db, ic),
                           gateway=dpid_str(ic.gateway), vns=list(ic.vns))
            graph.add_edge(node, 'nve:' + dpid_str(ic.gateway),
                           kind='gateway')
            for vnid in ic.vns:
                graph.add_edge(node, 'vn:%d' % vnid, kind='joins',
                               vnid=vnid)
        for name, ext in sorted(db.externals.items()):
            node = 'ext:' + name
            graph.add_node(node, kind='external', name=name, label=name,
                           gateway=dpid_str(ext.gateway), port=ext.port,
                           vnids=sorted(ext.vnids()))
            graph.add_edge(node, 'nve:' + dpid_str(ext.gateway),
                           kind='gateway', port=ext.port)
            for vnid in sorted(ext.vnids()):
                graph.add_edge(node, 'vn:%d' % vnid, kind='joins',
                               vnid=vnid)
