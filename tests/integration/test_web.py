"""The web page (``GET /``) in headless Chromium on the Figure 1 demo.

The page is loaded in Debian's ``chromium`` (installed by
tools/install-deps.sh), driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: NUL-terminated JSON on fds 3 and 4, so no
websocket library is needed).  Chromium's one-shot command line
(``--screenshot --dump-dom --virtual-time-budget``) cannot be used here: the
page keeps a long-poll on /v1/events open at all times, and a pending fetch
pauses virtual time (seen: a 2 s budget over one 20 s long-poll took 21 s),
so the budget never runs out and Chromium never exits.

What is checked: the rendered DOM shows VN1..VN3, edge1..edge6 and the
tenant systems' MACs in the mapping tables; the screenshot is a valid PNG of
the requested size that is not blank (decoded with zlib/struct, colours
counted); the page threw no JavaScript error; and a VN created through REST
after the page loaded appears without a reload (long-poll -> redraw).  The
app runs with an auth file; the page is opened with a reader token in its
address's fragment, and every request it makes carries it.

The screenshot is part of the test output: it is written to the test's
tmp_path and copied to ``tests/output/figure1-web.png`` (with the DOM beside
it as figure1-web.html), and its path is printed past pytest's capture.
"""

import base64
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import zlib

import pytest

from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.lab import Lab

from conftest import ROOT, topology_path

pytestmark = pytest.mark.integration

WIDTH, HEIGHT = 1400, 1000
OUTPUT_DIR = os.path.join(ROOT, 'tests', 'output')
SCREENSHOT = os.path.join(OUTPUT_DIR, 'figure1-web.png')
NVES = ['edge%d' % i for i in range(1, 7)]
VNS = ['VN1', 'VN2', 'VN3']
VNID = {'VN1': 1001, 'VN2': 1002, 'VN3': 1003}
LIVE_VN = {'vnid': 1077, 'name': 'VN-live'}

# As the machine notes say: headless as root, and nothing that talks to the
# outside (this network refuses it).
CHROMIUM_FLAGS = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage', '--hide-scrollbars', '--mute-audio',
    '--window-size=%d,%d' % (WIDTH, HEIGHT),
]


def chromium_binary():
    """Debian's browser itself (the /usr/bin/chromium wrapper adds flags and
    shell noise); fails, never skips, when it is not installed."""
    for path in ('/usr/lib/chromium/chromium', shutil.which('chromium'),
                 shutil.which('chromium-browser')):
        if path and os.access(path, os.X_OK):
            return path
    raise AssertionError('chromium is not installed: run tools/install-deps.sh')


class CDPError(AssertionError):
    pass


class Browser:
    """One headless Chromium, one page, DevTools protocol over a pipe."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix='nvo3-chromium-')
        self.log_path = os.path.join(self.profile, 'chromium.log')
        self.proc = None
        self.session = None
        self.errors = []            # JS exceptions and console errors
        self._next_id = 0
        self._replies = {}
        self._cond = threading.Condition()
        self._closed = False
        self._out = self._in = None

    # -- life cycle --

    def start(self):
        try:
            self._launch()
            target = self.call('Target.createTarget',
                               url='about:blank')['targetId']
            self.session = self.call('Target.attachToTarget', targetId=target,
                                     flatten=True)['sessionId']
            self.page('Runtime.enable')
            self.page('Log.enable')
            self.page('Page.enable')
            self.page('Emulation.setDeviceMetricsOverride', width=WIDTH,
                      height=HEIGHT, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise
        return self

    def _launch(self):
        # Pipe ends moved to fds >= 20 so that bash can put them on 3
        # (commands in) and 4 (replies out), where --remote-debugging-pipe
        # expects them, whatever numbers os.pipe() handed out.
        ends = []
        for r, w in (os.pipe(), os.pipe()):
            for fd in (r, w):
                ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 20))
                os.close(fd)
        to_child_r, to_child_w, from_child_r, from_child_w = ends
        args = [chromium_binary(), *CHROMIUM_FLAGS,
                '--user-data-dir=' + self.profile,
                '--remote-debugging-pipe', 'about:blank']
        try:
            with open(self.log_path, 'wb') as log:
                self.proc = subprocess.Popen(
                    ['bash', '-c', 'exec "$@" 3<&%d 4>&%d %d<&- %d>&-' % (
                        to_child_r, from_child_w, to_child_r, from_child_w),
                     'chromium', *args],
                    pass_fds=(to_child_r, from_child_w),
                    stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._out = os.fdopen(to_child_w, 'wb', buffering=0)
        self._in = os.fdopen(from_child_r, 'rb', buffering=0)
        threading.Thread(target=self._read, daemon=True,
                         name='cdp-reader').start()

    def close(self):
        """Stop the browser: politely, then its whole process group."""
        if self.proc is not None:
            try:
                if self.proc.poll() is None and not self._closed:
                    self.call('Browser.close', timeout=5)
            except (CDPError, OSError):
                pass
            # Wait for the browser to exit but leave it unreaped, so that
            # its pid, the id of its process group, cannot be reused while
            # the helpers it left in that group (zygote, renderer, GPU) are
            # killed by that id.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and os.waitid(
                    os.P_PID, self.proc.pid,
                    os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                time.sleep(0.05)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            for f in (self._out, self._in):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass
            self.proc = None
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def log_tail(self, n=2000):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read()[-n:].decode(errors='replace')
        except OSError:
            return ''

    # -- protocol --

    def _read(self):
        buf = b''
        while True:
            try:
                chunk = self._in.read(65536)
            except (OSError, ValueError):
                chunk = b''
            if not chunk:
                break
            buf += chunk
            while b'\0' in buf:
                raw, buf = buf.split(b'\0', 1)
                msg = json.loads(raw)
                if 'id' in msg:
                    with self._cond:
                        self._replies[msg['id']] = msg
                        self._cond.notify_all()
                else:
                    self._event(msg)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _event(self, msg):
        method, params = msg.get('method'), msg.get('params', {})
        if method == 'Runtime.exceptionThrown':
            d = params['exceptionDetails']
            self.errors.append('exception: %s %s' % (
                d.get('text'), d.get('exception', {}).get('description', '')))
        elif method == 'Runtime.consoleAPICalled' and params.get('type') == 'error':
            self.errors.append('console.error: %s' % ' '.join(
                str(a.get('value', a.get('description')))
                for a in params.get('args', [])))
        elif method == 'Log.entryAdded' and params['entry']['level'] == 'error':
            self.errors.append('log: %s %s' % (params['entry'].get('text'),
                                               params['entry'].get('url', '')))

    def call(self, method, session=None, timeout=30, **params):
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg = {'id': mid, 'method': method, 'params': params}
        if session:
            msg['sessionId'] = session
        self._out.write(json.dumps(msg).encode() + b'\0')
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise CDPError('%s: no reply (%s); chromium log:\n%s' % (
                        method, 'browser gone' if self._closed else 'timeout',
                        self.log_tail()))
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if 'error' in reply:
            raise CDPError('%s: %s' % (method, reply['error']))
        return reply.get('result', {})

    def page(self, method, **params):
        return self.call(method, session=self.session, **params)

    # -- the page --

    def navigate(self, url):
        result = self.page('Page.navigate', url=url)
        if result.get('errorText'):
            raise CDPError('navigate %s: %s' % (url, result['errorText']))

    def js(self, expression):
        result = self.page('Runtime.evaluate', expression=expression,
                           returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in result:
            raise CDPError('%s: %s' % (expression, result['exceptionDetails']))
        return result['result'].get('value')

    def wait_js(self, expression, timeout=20.0, what=None):
        """Until ``expression`` is truthy in the page; returns its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise CDPError('timed out after %.0fs waiting for %s (last: %r)' % (
            timeout, what or expression, value))

    def dom(self):
        return self.js('document.documentElement.outerHTML')

    def text(self):
        return self.js('document.body.innerText')

    def screenshot(self, path):
        data = self.page('Page.captureScreenshot', format='png',
                         captureBeyondViewport=False)['data']
        with open(path, 'wb') as f:
            f.write(base64.b64decode(data))
        return path


# --- PNG, decoded with the standard library only ------------------------------

def decode_png(data):
    """(width, height, rows of pixel tuples) of an 8-bit RGB/RGBA/grey PNG."""
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG signature'
    pos, chunks, idat = 8, [], b''
    header = None
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc, = struct.unpack('>I', data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, 'bad CRC in %s' % kind
        chunks.append(kind)
        if kind == b'IHDR':
            header = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat += body
        pos += 12 + length
    assert chunks[0] == b'IHDR' and chunks[-1] == b'IEND', chunks
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0, header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw = zlib.decompress(idat)
    stride = width * channels
    assert len(raw) == height * (stride + 1), 'truncated image data'
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ftype == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xff
        elif ftype == 2:
            line = bytearray((a + b) & 0xff for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xff
        elif ftype == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = prev[i]
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xff
        else:
            assert ftype == 0, 'bad filter type %d' % ftype
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def colour_counts(channels, rows):
    """{(r, g, b): pixels}."""
    counts = {}
    for row in rows:
        for i in range(0, len(row), channels):
            px = row[i:i + 3] if channels >= 3 else row[i:i + 1] * 3
            counts[px] = counts.get(px, 0) + 1
    return {tuple(k): v for k, v in counts.items()}


# --- the tests ------------------------------------------------------------------

def _vnics(lab):
    return [v for vm in lab.tb.topo.vms for v in vm.vnics]


@pytest.fixture(scope='module')
def figure1():
    _require_root_and_tools()
    chromium_binary()
    # With an auth file: the page reads with a reader token (given once in
    # the address's fragment, as an operator would open it).
    lab = Lab(topology_path('figure1.yaml'), auth=True).start()
    try:
        lab.wait_sync()
        # Every VM talks a little (one ping to a peer of its VN), so that
        # every tenant system is in its VN's mapping table before the page
        # is opened.
        vnics = _vnics(lab)
        for v in vnics:
            peer = next(str(w.ip.ip) for w in vnics
                        if w.vn == v.vn and w.vm != v.vm)
            got = lab.reach(v.vm, [peer])
            assert all(got.values()), (v.vm, got)
        want = {(v.vnid, v.mac) for v in vnics}
        lab.wait_for(lambda: want <= {(m['vnid'], m['mac']) for m in
                                      lab.get('/v1/mappings')},
                     what='every tenant system in the mapping tables')
        yield lab
    finally:
        problems = lab.stop()
    assert problems == [], problems


@pytest.fixture
def browser():
    b = Browser().start()
    try:
        yield b
    finally:
        b.close()


def _loaded(browser, lab):
    """Open the page and wait until topology and tables are drawn."""
    browser.navigate(lab.url('/#token=' + lab.tokens['viewer']))
    browser.wait_js(
        "document.querySelectorAll('#topology g').length > 20 && "
        "document.querySelectorAll('#tables table').length >= 3 && "
        "document.getElementById('status').className === 'live'",
        what='topology, three mapping tables and a live status')


def test_page_renders_figure1(figure1, browser, tmp_path, capsys):
    lab = figure1
    _loaded(browser, lab)
    # Fonts loaded and two frames painted since the last redraw.
    browser.js('document.fonts.ready.then(() => new Promise(r => '
               'requestAnimationFrame(() => requestAnimationFrame(r))))')
    shot = browser.screenshot(str(tmp_path / 'figure1-web.png'))
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
    dom = browser.dom()
    with open(str(tmp_path / 'figure1-web.html'), 'w') as f:
        f.write(dom)
    shutil.copyfile(str(tmp_path / 'figure1-web.html'),
                    os.path.join(OUTPUT_DIR, 'figure1-web.html'))
    with capsys.disabled():
        print('\n  screenshot: %s (copy of %s)' % (SCREENSHOT, shot))

    vnics = _vnics(lab)
    svg_text = browser.js(
        "[...document.querySelectorAll('#topology text')]"
        ".map(t => t.textContent)")
    for name in VNS + NVES + [v.mac for v in vnics]:
        assert name in svg_text, (name, svg_text)
    for name in VNS + NVES:
        assert '>%s<' % name in dom, name
    # The mapping tables: one per VN, each listing exactly its tenant
    # systems, at the right NVE and VTEP.
    tables = browser.js(
        "[...document.querySelectorAll('#tables .vn-title')].map(t => ["
        "t.querySelector('.vn-label').textContent, "
        "[...t.nextElementSibling.querySelectorAll('tbody tr')].map(tr => "
        "[...tr.querySelectorAll('td')].map(td => td.textContent))])")
    by_vn = {name: rows for name, rows in tables}
    assert sorted(by_vn) == VNS, tables
    vtep = {n.name: n.vtep_ip for n in lab.tb.topo.nves}
    for vn in VNS:
        mine = sorted(v.mac for v in vnics if v.vn == vn)
        assert sorted(row[0] for row in by_vn[vn]) == mine, (vn, by_vn[vn])
    for v in vnics:
        row = next(r for r in by_vn[v.vn] if r[0] == v.mac)
        assert str(v.ip.ip) in row[1].split(), (v.vm, row)
        assert v.nve in row and str(vtep[v.nve]) in row, (v.vm, row)
    counts = browser.js("document.getElementById('counts').textContent")
    assert counts == '3 VNs, 6 NVEs, %d tenant systems' % len(vnics), counts
    assert browser.errors == []
    # The token left the address at once (it stays in the tab's storage).
    assert 'token' not in browser.js('window.location.href')

    with open(shot, 'rb') as f:
        width, height, channels, rows = decode_png(f.read())
    assert (width, height) == (WIDTH, HEIGHT)
    counts = colour_counts(channels, rows)
    top_share = max(counts.values()) / (width * height)
    assert len(counts) > 50, len(counts)    # text anti-aliasing, VN colours
    assert top_share < 0.9, top_share       # not one flat background
    # Each VN's colour is painted (its pill, the legend, its table's title):
    # the drawing was rendered, not just the page's frame.
    for vnid in sorted(VNID.values()):
        hex_colour = browser.js('vnColour(%d)' % vnid)
        rgb = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) > 1000, (vnid, hex_colour, counts.get(rgb))


def test_page_follows_events_without_reload(figure1, browser, capsys):
    lab = figure1
    _loaded(browser, lab)
    browser.js('window.__nvo3_marker = 1')      # gone if the page reloads
    assert LIVE_VN['name'] not in browser.text()
    status, body = lab.request('POST', '/v1/vns', LIVE_VN)
    assert status == 201, body
    try:
        t0 = time.monotonic()
        browser.wait_js(
            "[...document.querySelectorAll('#topology text')]"
            ".some(t => t.textContent === %s)" % json.dumps(LIVE_VN['name']),
            what='the new VN in the drawing')
        browser.wait_js(
            "document.getElementById('tables').textContent.includes(%s)"
            % json.dumps(LIVE_VN['name']), what='the new VN in the tables')
        shown = time.monotonic() - t0
        assert browser.js('window.__nvo3_marker') == 1, 'the page reloaded'
        events = browser.js("document.getElementById('events').innerText")
        assert any('vn-created' in line and str(LIVE_VN['vnid']) in line
                   for line in events.splitlines()), events
        assert browser.js("document.getElementById('counts').textContent") \
            .startswith('4 VNs')
        with capsys.disabled():
            print('\n  new VN shown %.2fs after the POST' % shown)
    finally:
        status, body = lab.request('DELETE', '/v1/vns/%d' % LIVE_VN['vnid'])
        assert status == 204, body
    browser.wait_js(
        "document.getElementById('counts').textContent.startsWith('3 VNs')",
        what='the deleted VN gone')
    assert browser.errors == []
