"""A holder process in new network (and mount) namespaces that commands
join: commands run as written, with ``127.0.0.1`` ports and, with
overlays, paths such as ``/etc/nvo3`` of their own, nothing reaching the
machine's."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from conftest import ROOT


class Namespace:
    """A holder process in new namespaces; commands join them."""

    def __init__(self, mount_overlays=None):
        self.tmp = tempfile.mkdtemp(prefix='nvo3-readme-')
        setup = ['ip link set lo up']
        flags = ['-n']
        for path in mount_overlays or ():
            flags = ['-n', '-m', '--propagation', 'private']
            base = os.path.join(self.tmp, path.strip('/').replace('/', '-'))
            os.makedirs(base + '/up')
            os.makedirs(base + '/work')
            setup.append('mount -t overlay overlay -o lowerdir=%s,upperdir='
                         '%s/up,workdir=%s/work %s' % (path, base, base, path))
        self.flags = ['-n'] + (['-m'] if mount_overlays else [])
        self.holder = subprocess.Popen(
            ['unshare'] + flags + ['sh', '-ec', ' && '.join(setup) +
                                   ' && echo ready && exec sleep 86400'],
            stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout.readline().strip() == 'ready'
        self.procs = []

    def argv(self, script):
        return ['nsenter', '-t', str(self.holder.pid)] + self.flags + [
            '--wd=' + ROOT, 'bash', '-ec', script]

    def run(self, script, env=None, timeout=90):
        """Run ``script`` as written; its output (fails the test on a
        non-zero exit)."""
        done = subprocess.run(self.argv(script), capture_output=True,
                              text=True, timeout=timeout,
                              env=dict(os.environ, **(env or {})))
        assert done.returncode == 0, (script, done.stdout, done.stderr)
        return done.stdout

    def start(self, script, log):
        """Run ``script`` in the background, output to ``log``."""
        out = open(os.path.join(self.tmp, log), 'w+')
        proc = subprocess.Popen(self.argv(script), stdout=out,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((proc, out))
        return proc, out

    def wait_rest(self, port, proc, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, 'the app exited'
            probe = subprocess.run(self.argv(
                'curl -sf -o /dev/null localhost:%d/v1/vns' % port),
                capture_output=True)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError('REST did not answer on %d' % port)

    @staticmethod
    def stop(proc, timeout=60):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self):
        for proc, out in reversed(self.procs):
            self.stop(proc)
            out.close()
        self.holder.kill()
        self.holder.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def log_problems(out):
    """Error lines of a log written by :meth:`Namespace.start`."""
    out.seek(0)
    text = out.read()
    return [line for line in text.splitlines()
            if 'Traceback' in line or 'ERROR' in line]
