"""Imports run one way: app -> northbound/southbound/peering -> authority ->
storage.

Beside the layers, ``runtime`` (what peers can do to the process, bounded:
accept loops, rate-limited logging) and ``settings`` import nothing of ours
and may be used by the layers that talk to peers.

Every module of the product is parsed and each of its imports (at module
level or inside a function) is checked against the table below, so a change
that makes the decisions depend on an interface, the product depend on its
test bench, or the plain-Python parts depend on os-ken fails here.
"""

import ast
import os

import nvo3_ryu_app

PACKAGE = os.path.dirname(os.path.abspath(nvo3_ryu_app.__file__))
TOP = 'nvo3_ryu_app'

# Layer of a module -> layers of ours it may import (besides its own).
# ``settings`` (one frozen dataclass of options) imports nothing of ours and
# may be read by every layer; the testbed may import the product, never
# the other way round; the command-line clients talk to REST and the RPC
# only.
ALLOWED = {
    'storage': set(),
    'settings': set(),
    'runtime': set(),
    'authority': {'storage', 'settings'},
    'southbound': {'authority', 'storage', 'settings', 'runtime'},
    'northbound': {'authority', 'settings', 'runtime'},
    'peering': {'authority', 'settings', 'runtime'},
    'cli': set(),
    'app': {'northbound', 'southbound', 'peering', 'authority', 'storage',
            'settings', 'runtime'},
    'testbed': {'authority', 'settings', 'storage', 'southbound',
                'northbound', 'peering', 'runtime', 'app'},
}

# Modules that must stay plain Python (no os-ken at all), and the os-ken
# parts the others may use.  os_ken.lib.packet parses frames in
# authority/packets.py only; only app.py is an os-ken app, and
# southbound/ofguard.py the one other module that reaches into os-ken's
# controller (its parser and accept loop, guarded).
PLAIN = ('service', 'authority.', 'southbound.channel',
         'southbound.cluster', 'southbound.convergence',
         'southbound.flowtable', 'storage.',
         'settings', 'gcpolicy', 'runtime.ratelog', 'cli.')
OS_KEN_ALLOWED = {
    'authority.packets': ('os_ken.lib.packet',),
    'southbound.ofwire': ('os_ken.ofproto', 'os_ken.lib.type_desc'),
    'southbound.ofparse': ('os_ken.ofproto',),
    'southbound.ofguard': ('os_ken.ofproto', 'os_ken.controller',
                           'os_ken.lib.hub'),
    'southbound.rawpath': ('os_ken.ofproto',),
    'southbound.ofstats': ('os_ken.ofproto', 'os_ken.lib.type_desc'),
    'northbound.registration': ('os_ken.lib.hub', 'os_ken.lib.rpc'),
    'northbound.rest.server': ('os_ken.lib.hub',),
    'northbound.rest.parse': ('os_ken.lib.hub',),
    'runtime.listener': ('os_ken.lib.hub',),
    'peering.bgp': ('os_ken.lib.hub', 'os_ken.lib.packet.bgp',
                    'os_ken.services.protocols.bgp.'),
    'peering.oskenfix': ('os_ken', 'os_ken.services.protocols.bgp.'),
    'settings': ('os_ken.cfg',),
    'app': ('os_ken.',),
}


def layer(module):
    """The layer of ``module`` (its name below nvo3_ryu_app)."""
    head = module.split('.')[0]
    if head in ('storage', 'authority', 'southbound', 'northbound', 'cli',
                'testbed', 'settings', 'runtime', 'peering'):
        return head
    return 'app'        # app.py, service.py, gcpolicy.py, flags.py


def modules():
    """(name below nvo3_ryu_app, path) of every module of the package."""
    for dirpath, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, '.')
                yield rel[:-len('.__init__')] if rel.endswith('__init__') \
                    else rel, path


def imports(module, path):
    """Every name ``module`` imports, as absolute dotted names (``from a
    import b`` gives ``a.b``)."""
    is_package = path.endswith('__init__.py')
    with open(path) as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = (TOP + '.' + module).split('.')
                base = parts[:len(parts) - node.level + is_package]
                name = '.'.join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            for alias in node.names:
                yield name + '.' + alias.name


def ours(name):
    """``name`` below nvo3_ryu_app if it is one of our modules, else None."""
    if name == TOP or not name.startswith(TOP + '.'):
        return None
    rest = name[len(TOP) + 1:]
    while rest and not (os.path.exists(os.path.join(
            PACKAGE, *rest.split('.')) + '.py') or os.path.isdir(
                os.path.join(PACKAGE, *rest.split('.')))):
        rest = rest.rpartition('.')[0]    # a name imported from a module
    return rest or None


def test_the_walk_sees_every_layer():
    found = {layer(m) for m, _ in modules()}
    assert found == set(ALLOWED)


def test_imports_run_one_way():
    wrong = []
    for module, path in modules():
        mine = layer(module)
        for name in imports(module, path):
            target = ours(name)
            if target is None:
                continue
            theirs = layer(target)
            if theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append('%s (%s) imports %s (%s)' % (
                    module, mine, target, theirs))
    assert not wrong, '\n'.join(sorted(set(wrong)))


def test_os_ken_stays_at_the_edges():
    wrong = []
    for module, path in modules():
        if layer(module) == 'testbed':
            continue
        allowed = OS_KEN_ALLOWED.get(module, ())
        for name in imports(module, path):
            if not name.startswith('os_ken'):
                continue
            if not any(name.startswith(a) for a in allowed):
                wrong.append('%s imports %s' % (module, name))
            elif module.startswith(PLAIN) and module not in OS_KEN_ALLOWED:
                wrong.append('%s must stay plain Python: %s' % (module, name))
    assert not wrong, '\n'.join(sorted(set(wrong)))


def test_the_checks_catch_a_wrong_import(tmp_path):
    """The walk resolves relative imports: an authority module importing
    the southbound or the testbed would be caught."""
    path = tmp_path / 'planner.py'
    path.write_text('from ..southbound import flowtable\n'
                    'from ..testbed.topology import load_topology\n')
    found = {ours(n) for n in imports('authority.planner', str(path))}
    assert {'southbound.flowtable', 'testbed.topology'} <= found
    assert {layer(m) for m in found if m} - ALLOWED['authority'] == {
        'southbound', 'testbed'}
