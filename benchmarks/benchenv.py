"""What every benchmark records beside its figures: when, and on what.

``machine()`` reads the facts the README's figures need (CPU count and
model, memory, kernel, Python, Open vSwitch version) from /proc and the
programs themselves; a fact that cannot be read is None, never a guess.
"""

import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(
        timespec='seconds')


def _cpu_model():
    try:
        with open('/proc/cpuinfo') as fh:
            for line in fh:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_gib():
    try:
        with open('/proc/meminfo') as fh:
            for line in fh:
                if line.startswith('MemTotal:'):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _ovs_version():
    exe = shutil.which('ovs-vswitchd') or (
        '/usr/sbin/ovs-vswitchd' if os.path.exists('/usr/sbin/ovs-vswitchd')
        else None)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, '--version'], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'(\d+\.\d+\.\d+)', out)
    return m.group(1) if m else None


def code():
    """The commit the figures were measured on (and whether the working
    tree differed from it)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(['git', '-C', root, 'rev-parse', '--short',
                               'HEAD'], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(
            ['git', '-C', root, 'status', '--porcelain', '--untracked-files=no',
             '--', 'nvo3_ryu_app'], capture_output=True, text=True,
            timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return {'git': head, 'app_modified': dirty}


def machine():
    return {
        'nproc': os.cpu_count(),
        'cpu_model': _cpu_model(),
        'mem_gib': _mem_gib(),
        'kernel': platform.release(),
        'python': platform.python_version(),
        'ovs': _ovs_version(),
    }


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def read_pyspy(raw_path, frame_name=lambda f: f):
    """Read a ``py-spy record --format raw`` file (one collapsed stack and
    its count per line): (samples, own, total) where ``own`` counts the
    innermost frame and ``total`` every frame on the stack, by
    ``frame_name(frame)``.  None when the file is missing or unreadable."""
    own, total, samples = {}, {}, 0
    try:
        with open(raw_path, encoding='utf-8', errors='replace') as fh:
            for line in fh:
                stack, _, count = line.rstrip('\n').rpartition(' ')
                if not stack:
                    continue
                count = int(count)
                samples += count
                frames = [frame_name(f) for f in stack.split(';')]
                own[frames[-1]] = own.get(frames[-1], 0) + count
                for frame in set(frames):
                    total[frame] = total.get(frame, 0) + count
    except (FileNotFoundError, ValueError):
        return None
    return samples, own, total


def top_frames(counts, samples, n=15):
    """[(percent of samples, frame)] of the ``n`` largest counts."""
    return [(round(100.0 * c / max(1, samples), 1), f)
            for f, c in sorted(counts.items(), key=lambda kv: -kv[1])[:n]]


def profile_summary(raw_path, keep=('nvo3_ryu_app', 'os_ken'), n=20):
    """Top frames of a py-spy raw file: [(percent of samples a frame is
    on the stack, frame)], app and os-ken frames only, one entry per
    function (line numbers dropped)."""
    read = read_pyspy(raw_path, lambda f: re.sub(r':\d+\)$', ')', f))
    if read is None:
        return None
    samples, _, total = read
    total = {f: c for f, c in total.items() if any(k in f for k in keep)}
    return {'samples': samples, 'top': top_frames(total, samples, n)}


def write_json(path, data):
    """Write a result, stamped (where it is not already) with the date, the
    command that reproduces it, the commit and the machine."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data.setdefault('date', now_iso())
    data.setdefault('command', shlex.join(
        ['.venv/bin/python', os.path.relpath(os.path.abspath(sys.argv[0]),
                                             root)] + sys.argv[1:]))
    data.setdefault('code', code())
    data.setdefault('machine', machine())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write('\n')
    os.replace(tmp, path)


def percentile(samples, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    s = sorted(samples)
    if not s:
        return None
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]
