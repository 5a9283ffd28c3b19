"""Run the app under ``osken-manager`` as a child process, for tests and demos.

    with ControllerProcess(config_file="topologies/two-nve.yaml") as ctl:
        with Testbed("topologies/two-nve.yaml", of_port=ctl.of_port) as tb:
            ...
    assert not ctl.problems          # no Traceback / OFPErrorMsg in its log

Each problem is one whole log record: the line that signals it and the
traceback that follows.  ``close()`` keeps the run directory (with the log)
of a controller that logged problems, marks it kept (``nvo3-testbed
cleanup`` leaves it), and prints the problems and where the directory is to
stderr, so a failure can be read after the run.

Why a class rather than a fixture: tests restart and kill the controller
(docs/laws.md, law 5), benchmarks time it, and the demo uses it too. Ports are
picked free on 127.0.0.1 (loopback only, per the address rules), the ini is
written into a run directory (``/tmp/nvo3-<prefix>/`` with a manifest, so
``nvo3-testbed cleanup`` can kill a controller orphaned by a killed test
run), and start-up waits on a bounded deadline for the OpenFlow port to be
in LISTEN (read from /proc/net/tcp: connecting to probe it would look like a
switch to the app), failing fast if the process dies.

``auth`` (an auth document, docs/contracts.md, authentication) is written
to ``auth.json`` in the run directory and named by ``auth_file``; ``pki``
(a testbed/pki.py Pki) makes the app serve OpenFlow over TLS only, on
``of_port``, requiring switch certificates its CA signed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Iterable, List, Optional

from . import rundir

DEFAULT_APP = "nvo3_ryu_app.app"
PROBLEM_RE = re.compile(r"Traceback|OFPErrorMsg")


_CHAINED = ("During handling of the above exception", "The above exception was")


def problem_records(text: str) -> List[str]:
    """Every record of ``text`` (a log) that signals an error, whole.

    A record is a line matching PROBLEM_RE and, when a traceback follows
    it, the traceback up to its exception line (chained tracebacks
    included): "hub: uncaught exception: Traceback ..." is useless without
    the frames that follow it.
    """
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        if not PROBLEM_RE.search(lines[i]):
            i += 1
            continue
        end = _traceback_end(lines, i)
        out.append("\n".join(lines[i:end]))
        i = end
    return out


def _traceback_end(lines: List[str], i: int) -> int:
    """Index after the traceback that starts at (or follows) line ``i``."""
    j, frames = i + 1, "Traceback" in lines[i]
    while j < len(lines):
        line = lines[j]
        after = lines[j + 1] if j + 1 < len(lines) else ""
        if line.startswith((" ", "\t", "Traceback") + _CHAINED):
            frames = True
            j += 1
        elif line == "" and frames and after.startswith(("Traceback",) + _CHAINED):
            j += 1               # between chained tracebacks
        elif frames and line:
            j += 1               # the exception line closes a traceback ...
            if not (j + 1 < len(lines) and lines[j] == ""
                    and lines[j + 1].startswith(_CHAINED)):
                break            # ... unless another one is chained to it
        else:
            break
    return j


def problem_report(problems: List[str], kept: Iterable[str]) -> str:
    """What a run that logged app problems prints: every problem whole,
    and the run directories kept for reading them."""
    out = [f"\n=== the app logged {len(problems)} problem(s) ==="]
    for n, problem in enumerate(problems, 1):
        out.append(f"--- app problem {n} ---\n{problem}")
    out.append("=== run directories kept: " + ", ".join(kept) + " ===\n")
    return "\n".join(out)


class ControllerError(RuntimeError):
    """The controller did not start, or died."""


def free_port(exclude: Iterable[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in set(exclude):
            return port
    raise ControllerError("no free port found")


def listening_ports() -> set:
    """Local TCP ports in LISTEN state in this network namespace."""
    ports = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    if cols[3] == "0A":
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    return ports


def osken_manager_path() -> str:
    """osken-manager of the running interpreter's environment (the venv)."""
    here = os.path.join(os.path.dirname(sys.executable), "osken-manager")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("osken-manager")
    if not found:
        raise ControllerError("osken-manager not found (run tools/install-deps.sh and use .venv)")
    return found


class ControllerProcess:
    """osken-manager running the app; see the module docstring."""

    def __init__(self, of_port: Optional[int] = None, rest_port: Optional[int] = None,
                 rpc_port: Optional[int] = None, config_file: Optional[str] = None,
                 state_dir: Optional[str] = None, app: str = DEFAULT_APP,
                 manifest: Optional[rundir.Manifest] = None, extra_ini: str = "",
                 extra_args: Iterable[str] = (), auth: Optional[dict] = None, pki=None):
        used: List[int] = []
        self.of_port = of_port or free_port(used)
        used.append(self.of_port)
        self.rest_port = rest_port or free_port(used)
        used.append(self.rest_port)
        self.rpc_port = rpc_port or free_port(used)
        self.config_file = os.path.abspath(config_file) if config_file else None
        self.app = app
        self.extra_args = list(extra_args)
        self.extra_ini = extra_ini
        self.auth = auth
        self.pki = pki
        self._own_manifest = manifest is None
        self.manifest = manifest or rundir.Manifest(rundir.new_prefix(), kind="controller")
        self.rundir = rundir.run_dir(self.manifest.prefix)
        self.state_dir = os.path.abspath(state_dir or os.path.join(self.rundir, "state"))
        self.ini_path = os.path.join(self.rundir, "controller.ini")
        self.log_path = os.path.join(self.rundir, "controller.log")
        self.auth_path = os.path.join(self.rundir, "auth.json")
        self.proc: Optional[subprocess.Popen] = None
        self.problems: List[str] = []
        self.kept: Optional[str] = None     # the run directory, once kept
        self.starts = 0

    # -- lifecycle ---------------------------------------------------------
    def write_ini(self) -> str:
        lines = ["[nvo3]"]
        if self.config_file:
            lines.append(f"config_file = {self.config_file}")
        lines += [f"rest_listen_port = {self.rest_port}", f"rpc_listen_port = {self.rpc_port}",
                  f"state_dir = {self.state_dir}"]
        if self.auth is not None:
            fd = os.open(self.auth_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.auth, fh, indent=1)
            lines.append(f"auth_file = {self.auth_path}")
        text = "\n".join(lines) + "\n" + (self.extra_ini.strip() + "\n" if self.extra_ini else "")
        os.makedirs(self.state_dir, exist_ok=True)
        with open(self.ini_path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return text

    def command(self) -> List[str]:
        if self.pki is not None:     # TLS only (os-ken serves one or the other)
            listen = ["--ofp-ssl-listen-port", str(self.of_port), *self.pki.osken_args()]
        else:
            listen = ["--ofp-tcp-listen-port", str(self.of_port)]
        return [osken_manager_path(), "--ofp-listen-host", "127.0.0.1", *listen,
                "--config-file", self.ini_path, *self.extra_args, self.app]

    def start(self, timeout: float = 30.0, wait_for: Iterable[str] = ("of",)) -> "ControllerProcess":
        """Start and wait for the listed ports ("of", "rest", "rpc") to LISTEN."""
        if self.running:
            return self
        self.write_ini()
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {self.starts + 1}: {' '.join(self.command())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.rundir)
        log.close()
        self.starts += 1
        self.manifest.add_pid(self.proc.pid, "osken-manager")
        ports = {"of": self.of_port, "rest": self.rest_port, "rpc": self.rpc_port}
        for what in wait_for:
            self.wait_listening(ports[what], timeout)
        return self

    def wait_listening(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while port not in listening_ports():
            if self.proc is None or self.proc.poll() is not None:
                raise ControllerError(f"osken-manager exited (code {self.returncode}) before "
                                      f"port {port} listened:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ControllerError(f"port {port} not listening after {timeout}s:\n"
                                      f"{self.log_tail()}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.poll() if self.proc else None

    def stop(self, timeout: float = 10.0) -> List[str]:
        """Graceful stop (SIGINT: os-ken closes its apps), then SIGTERM, SIGKILL.
        Returns (and keeps in ``.problems``) the log lines that signal errors."""
        if self.running:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3), (signal.SIGKILL, 3)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.problems = self.scan_log()
        return self.problems

    def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup in the app."""
        if self.running:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def restart(self, timeout: float = 30.0, wait_for: Iterable[str] = ("of",)) -> None:
        self.stop()
        self.start(timeout=timeout, wait_for=wait_for)

    def close(self, keep_on_problems: bool = True, report: bool = True) -> List[str]:
        """Stop, and remove the run directory if this object created it,
        unless the app logged problems: then the directory is kept (and
        marked kept) and, with ``report``, the problems are printed to stderr
        with its path.  Returns the problems."""
        problems = self.stop()
        if problems and keep_on_problems:
            self.kept = self.rundir
            self.manifest.keep("app problems")
            if report:
                sys.stderr.write(problem_report(problems, [self.rundir]))
                sys.stderr.flush()
        elif self._own_manifest and os.environ.get("NVO3_KEEP_RUNDIR") != "1":
            shutil.rmtree(self.rundir, ignore_errors=True)
        return problems

    def __enter__(self) -> "ControllerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- log ---------------------------------------------------------------
    def log_text(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def scan_log(self) -> List[str]:
        """The log records that signal errors, each whole (see problem_records)."""
        return problem_records(self.log_text())

    def assert_clean(self) -> None:
        problems = self.scan_log()
        if problems:
            raise AssertionError(f"controller log {self.log_path} has errors:\n"
                                 + "\n".join(problems) + "\n--- tail ---\n" + self.log_tail())
