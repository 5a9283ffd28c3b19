"""A realistic NVO3 testbed on one machine, for tests, demos and benchmarks.

Each NVE (hypervisor) is a network namespace with its own ovsdb-server and
ovs-vswitchd (userspace datapath), VMs are Mininet hosts wired to the NVE's
integration bridge, and VXLAN/GRE tunnels cross an underlay bridge in a
namespace of its own. See topology.py for the YAML format and builder.py for
what gets built. Only topology parsing is imported eagerly: it needs no root,
no Mininet and no os-ken (the app imports it to read the same file).
"""

from .topology import (NVE, VM, VN, Gateway, TenantSystem, Topology, TopologyError,
                       Underlay, VNic, load_topology, parse_topology)

__all__ = ["NVE", "VM", "VN", "Gateway", "TenantSystem", "Topology", "TopologyError",
           "Underlay", "VNic", "load_topology", "parse_topology", "Testbed", "ControllerProcess"]


def __getattr__(name):
    # Lazy: builder needs Mininet (Debian's python), controller needs nothing
    # special, but neither should be paid for by "import topology".
    if name == "Testbed":
        from .builder import Testbed
        return Testbed
    if name == "ControllerProcess":
        from .controller import ControllerProcess
        return ControllerProcess
    raise AttributeError(name)
