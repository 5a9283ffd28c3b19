"""``nvo3-testbed``: bring a topology up interactively, or clean up after crashes.

    nvo3-testbed up topologies/figure1.yaml --of-port 6653   # Mininet CLI, torn down on exit
    nvo3-testbed up topologies/two-nve.yaml --standalone     # flood-and-learn, no controller
    nvo3-testbed cluster topologies/cluster.yaml --instances 3  # etcd + N instances + the NVEs
    nvo3-testbed cleanup [--prefix P] [--force]              # remove stale runs
    nvo3-testbed check topologies/figure1.yaml               # validate + print the summary

In the Mininet CLI, VMs are hosts (``h1 ping 192.168.50.3``) and NVEs are
nodes whose shell has OVS_RUNDIR set, so ``nve1 ovs-vsctl show`` and
``nve1 ovs-ofctl -O OpenFlow13 dump-flows br-int`` talk to that NVE's OVS.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from .topology import TopologyError, load_topology


def _up(args) -> int:
    from .builder import Testbed
    from mininet.cli import CLI

    topo = load_topology(args.topology)
    tb = Testbed(topo, of_port=None if args.standalone else args.of_port,
                 run_prefix=args.prefix, standalone=args.standalone,
                 keep_rundir=args.keep_rundir)
    with tb:
        print(tb.summary())
        print(f"started in {tb.timings['start']:.2f}s")
        if not args.standalone and args.of_port and args.wait:
            ok = tb.wait_connected(args.wait)
            print("all NVEs connected to the controller" if ok else
                  "WARNING: not every NVE connected to the controller yet")
        if args.no_cli:
            print("testbed is up; Ctrl-C or SIGTERM tears it down", flush=True)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
        else:
            CLI(tb.net)
    print(f"stopped in {tb.timings['stop']:.2f}s")
    return 0


def _interrupt(*_):
    raise KeyboardInterrupt


def _cluster(args) -> int:
    from .cluster import ClusterLab

    lab = ClusterLab(args.topology, instances=args.instances,
                     lease_ttl=args.lease_ttl, etcd_relays=False,
                     log_openflow=False)
    lab.start()
    try:
        masters = lab.wait_balanced(timeout=args.wait)
        print(f"etcd: {lab.etcd.endpoints} (3.4, data under {lab.etcd.dir})")
        for name, ctl in lab.ctls.items():
            print(f"instance {name}: REST http://127.0.0.1:{ctl.rest_port}  "
                  f"RPC 127.0.0.1:{ctl.rpc_port}  OpenFlow {ctl.of_port}  "
                  f"log {ctl.rundir}")
        print("masters: " + ", ".join(f"{d}={n}" for d, n in sorted(masters.items())))
        print(f"testbed run directory {lab.tb.rundir}; every NVE points at every instance")
        print("the cluster is up; Ctrl-C or SIGTERM tears it down", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    finally:
        problems = lab.stop()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _cleanup(args) -> int:
    from .cleanup import cleanup
    cleanup(prefix=args.prefix, force=args.force)
    return 0


def _check(args) -> int:
    topo = load_topology(args.topology)
    print(topo.summary())
    if args.bindings:
        print(json.dumps(topo.port_bindings(), indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nvo3-testbed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build a topology and open the Mininet CLI")
    up.add_argument("topology")
    up.add_argument("--of-port", type=int, default=6653,
                    help="controller port on 127.0.0.1 (default 6653)")
    up.add_argument("--standalone", action="store_true",
                    help="no controller: flood-and-learn with per-peer tunnels")
    up.add_argument("--prefix", help="run prefix (default: random)")
    up.add_argument("--keep-rundir", action="store_true", help="keep OVS logs after exit")
    up.add_argument("--wait", type=float, default=10.0,
                    help="seconds to wait for controller connections (0: don't)")
    up.add_argument("--no-cli", action="store_true", help="no Mininet CLI; stay up until Ctrl-C/SIGTERM")
    up.set_defaults(func=_up)
    cu = sub.add_parser("cluster", help="a 3-member etcd on loopback, N app instances "
                        "(cluster_backend = etcd) and the topology's NVEs pointed at every one")
    cu.add_argument("topology")
    cu.add_argument("--instances", type=int, default=3, help="app instances (default 3)")
    cu.add_argument("--lease-ttl", type=int, default=3, help="cluster_lease_ttl (default 3 s)")
    cu.add_argument("--wait", type=float, default=60.0,
                    help="seconds to wait for every NVE to have a master")
    cu.set_defaults(func=_cluster)
    cl = sub.add_parser("cleanup", help="remove namespaces/processes/dirs of dead runs")
    cl.add_argument("--prefix", help="clean exactly this run, even if its owner lives")
    cl.add_argument("--force", action="store_true", help="also clean runs whose owner lives")
    cl.set_defaults(func=_cleanup)
    ck = sub.add_parser("check", help="validate a topology file and print its summary")
    ck.add_argument("topology")
    ck.add_argument("--bindings", action="store_true", help="also print port bindings")
    ck.set_defaults(func=_check)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
