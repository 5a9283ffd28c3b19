"""What a command would do, with nothing applied (``--dry-run``).

:func:`dry_run` runs a command of commands.py exactly as
``Authority.execute`` would (the same handler, the same validation, the
same flow planner), but against a throw-away copy of the mapping database
and over copies of the NVEs' flow tables that start equal to what each NVE
must hold now.  What the copies end up with is the answer: the flow-mods
each NVE would receive, the mapping entries and records that would change,
the events that would be recorded.  Nothing is persisted, nothing is sent,
no event reaches the real log, and a refused command raises as it would.

Because it is built around the one front door, every command gets it,
the ones added later too.  The copy costs about what the database's size
does (benchmarks/dryrun_bench.py prints it); it is an operator's action,
not a per-packet one.
"""

import copy
from dataclasses import dataclass, field

from . import events as ev
from . import oftext, persist
from .addresses import dpid_str
from .planner import Planner


@dataclass
class DryRun:
    """The answer of a dry run (see the module doc)."""

    command: object
    result: object = None
    flow_mods: dict = field(default_factory=dict)   # dpid -> [(op, item)]
    port_names: dict = field(default_factory=dict)  # dpid -> {ofport: name}
    nve_names: dict = field(default_factory=dict)   # dpid -> name or None
    mappings: dict = field(default_factory=dict)    # added/removed/changed
    records: list = field(default_factory=list)     # before/after
    events: list = field(default_factory=list)

    def to_dict(self):
        """The answer as REST shows it: flow-mods in ovs-ofctl syntax."""
        nves = []
        for dpid in sorted(self.flow_mods):
            names = self.port_names.get(dpid, {})
            nves.append({
                'nve': dpid_str(dpid), 'name': self.nve_names.get(dpid),
                'flow_mods': [oftext.change_text(op, item, names)
                              for op, item in self.flow_mods[dpid]]})
        return {'dry_run': True, 'command': type(self.command).__name__,
                'nves': nves, 'mappings': self.mappings,
                'records': self.records, 'events': self.events}


class _OverlayTables(dict):
    """Flow tables that copy an NVE's table of ``real`` when first used:
    the copy's desired state is the real one, and it counts as held (a
    dry run shows what the command changes, not what is still on its way
    for earlier ones)."""

    def __init__(self, real):
        super().__init__()
        self.real = real
        self.build = real.build

    def _copy(self, dpid):
        source = self.real.get(dpid)
        if source is None:
            return None
        # Without the real tables' shared layers: a layer the copy changed
        # would change every real NVE reading it.
        table = self[dpid] = source.flat_copy()
        return table

    def __missing__(self, dpid):
        table = self._copy(dpid)
        if table is None:
            raise KeyError(dpid)
        return table

    def get(self, dpid, default=None):
        """The NVE's (copied) table, or ``default``."""
        if dict.__contains__(self, dpid):
            return dict.__getitem__(self, dpid)
        table = self._copy(dpid)
        return default if table is None else table

    def table(self, dpid):
        """The NVE's (copied) table, made empty on first use."""
        table = self.get(dpid)
        if table is None:
            table = self[dpid] = self.real.new_table()
        return table


def dry_run(authority, handler, command, now):
    """Run ``handler(db, command, now)`` on a copy; the :class:`DryRun`."""
    real = authority.db
    log = ev.EventLog(seq=real.event_log.seq)
    db = copy.deepcopy(real, {id(real.event_log): log})
    tables = _OverlayTables(authority.planner.tables)
    planner = Planner(db, authority.settings, tables)
    planner.vn_holders = copy.deepcopy(authority.planner.vn_holders)
    answer = DryRun(command)
    with log.acting(getattr(command, 'actor', None) or 'unknown'):
        answer.result = handler(db, command, now)
    changed = db.take_changed_records()
    planner.plan()
    for dpid in sorted(tables):
        changes = tables[dpid].take_changes()
        if changes:
            answer.flow_mods[dpid] = changes
            nve = db.nves.get(dpid) or real.nves.get(dpid)
            answer.nve_names[dpid] = nve.name if nve else None
            answer.port_names[dpid] = {
                n: name for name, n in (nve.dyn_ports if nve else {}).items()}
    answer.mappings = _mapping_changes(real, db, changed,
                                       authority.settings.tunnel_ports)
    for kind, key in sorted(changed, key=repr):
        if kind == 'att':
            continue                  # shown as mapping entries
        before = persist.record_of(real, kind, key)
        after = persist.record_of(db, kind, key)
        if before != after:
            answer.records.append({'kind': kind, 'key': _key_text(kind, key),
                                   'before': before, 'after': after})
    answer.events = log.since(real.event_log.seq)
    return answer


def _key_text(kind, key):
    return dpid_str(key) if kind == 'nve' else key


def _entries(db, key, tunnel_ports):
    att = db.attachments.get(key)
    if att is None:
        return {}
    return {e['ip']: e for e in db.mapping_entries(att, tunnel_ports)}


def _mapping_changes(real, db, changed, tunnel_ports):
    """Mapping table entries (draft section 4) added, removed, changed."""
    out = {'added': [], 'removed': [], 'changed': []}
    for kind, key in sorted(changed, key=repr):
        if kind != 'att':
            continue
        before = _entries(real, key, tunnel_ports)
        after = _entries(db, key, tunnel_ports)
        for ip in sorted(set(before) | set(after), key=str):
            old, new = before.get(ip), after.get(ip)
            if old is None:
                out['added'].append(new)
            elif new is None:
                out['removed'].append(old)
            elif old != new:
                out['changed'].append({'before': old, 'after': new})
    return out


__all__ = ['DryRun', 'dry_run']
