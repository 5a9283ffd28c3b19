"""One private Open vSwitch instance (ovsdb-server + ovs-vswitchd) in a namespace.

Why private instances: each NVE is a separate hypervisor with its own OVS, and
VMs with tagged vNICs need a software VLAN tagger -- this kernel has neither
8021q nor bridge VLAN filtering nor tc's vlan action, so the only thing that
can push/pop 802.1Q tags here is OVS's userspace datapath.

Everything lives in one run directory used as OVS_RUNDIR, OVS_DBDIR and
OVS_LOGDIR: database, sockets (db.sock, <bridge>.mgmt, *.ctl), pidfiles and
logs. Daemons are started with ``--detach`` (ready when the command returns)
and stopped by their recorded PID, checked against the run directory in
their command line.
"""

from __future__ import annotations

import os
from typing import Optional

from . import procs

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class OvsInstance:
    """ovsdb-server + ovs-vswitchd running inside the namespace of ``ns_pid``."""

    def __init__(self, ns_pid: int, rundir: str, name: str = "ovs"):
        self.ns_pid = ns_pid
        self.rundir = os.path.abspath(rundir)
        self.name = name
        self.db_sock = os.path.join(self.rundir, "db.sock")
        self.ovsdb_pid: Optional[int] = None
        self.vswitchd_pid: Optional[int] = None
        os.makedirs(self.rundir, exist_ok=True)
        self.env = dict(os.environ, OVS_RUNDIR=self.rundir, OVS_DBDIR=self.rundir,
                        OVS_LOGDIR=self.rundir)

    def start(self) -> None:
        db = os.path.join(self.rundir, "conf.db")
        if not os.path.exists(db):
            procs.run(["ovsdb-tool", "create", db, SCHEMA])
        pidfile = os.path.join(self.rundir, "ovsdb-server.pid")
        procs.run_in(self.ns_pid, [
            "ovsdb-server", db, f"--remote=punix:{self.db_sock}", f"--pidfile={pidfile}",
            "--detach", "--no-chdir", f"--log-file={self.rundir}/ovsdb-server.log"],
            env=self.env)
        self.ovsdb_pid = procs.read_pidfile(pidfile)
        self.vsctl("--no-wait", "init")
        self.start_vswitchd()

    def start_vswitchd(self) -> None:
        pidfile = os.path.join(self.rundir, "ovs-vswitchd.pid")
        procs.run_in(self.ns_pid, [
            "ovs-vswitchd", f"unix:{self.db_sock}", f"--pidfile={pidfile}", "--detach",
            "--no-chdir", f"--log-file={self.rundir}/ovs-vswitchd.log"], env=self.env)
        self.vswitchd_pid = procs.read_pidfile(pidfile)

    def stop_vswitchd(self) -> None:
        procs.kill_pid(self.vswitchd_pid, expect=self.rundir)
        self.vswitchd_pid = None

    def stop(self) -> None:
        self.stop_vswitchd()
        procs.kill_pid(self.ovsdb_pid, expect=self.rundir)
        self.ovsdb_pid = None

    def pids(self):
        return [p for p in (self.ovsdb_pid, self.vswitchd_pid) if p]

    def vsctl(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        res = procs.run(["ovs-vsctl", f"--db=unix:{self.db_sock}", "--timeout=20", *args],
                        check=check, timeout=timeout, env=self.env)
        return res.stdout

    def vsctl_batch(self, commands) -> str:
        """Run several ovs-vsctl commands (lists of words) as one transaction."""
        args = []
        for c in commands:
            args += ["--", *c]
        return self.vsctl(*args)

    def ofctl(self, command: str, *args: str, bridge: str = "br-int",
              check: bool = True) -> str:
        """``ovs-ofctl -O OpenFlow13 <command> unix:<rundir>/<bridge>.mgmt <args>``."""
        target = f"unix:{self.rundir}/{bridge}.mgmt"
        res = procs.run(["ovs-ofctl", "-O", "OpenFlow13", "--no-names", command, target, *args],
                        check=check, env=self.env)
        return res.stdout

    def appctl(self, *args: str, check: bool = True) -> str:
        target = os.path.join(self.rundir, f"ovs-vswitchd.{self.vswitchd_pid}.ctl")
        res = procs.run(["ovs-appctl", "-t", target, *args], check=check, env=self.env)
        return res.stdout
