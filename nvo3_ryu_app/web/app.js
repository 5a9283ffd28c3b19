/*
 * Live view of the mapping authority (no libraries: the page must work
 * offline).  A layered layout is enough and stays readable as the testbed
 * grows: VNs on the top row (each above its member NVEs), NVEs in the
 * middle, tenant systems under the NVE they are attached to; tunnels are
 * arcs between member NVEs, one colour per VN.
 *
 * Updates: a long-poll on /v1/events?since=N&wait=25 returns as soon as
 * something happens; the page then reloads the topology and the mapping
 * tables (at most a few times a second) and shows the new events.
 * All text is set with textContent, never innerHTML, so names and MACs
 * from the network cannot inject markup.
 */
'use strict';

const SVGNS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#3568d4', '#d2493a', '#2e9d4f', '#9a50c8', '#e08a1e',
                 '#1b9aaa', '#c2407d', '#6d8b1d', '#7f5a3c', '#4a5a8c'];
const state = {since: null, events: [], topo: null, mappings: {}};

function vnColour(vnid) {
  return PALETTE[Math.abs(vnid) % PALETTE.length];
}

function el(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    node.setAttribute(k, String(v));
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

function html(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

async function getJSON(path) {
  const resp = await fetch(path, {cache: 'no-store'});
  if (!resp.ok) throw new Error(path + ': HTTP ' + resp.status);
  return resp.json();
}

/* --- layout ------------------------------------------------------------ */

function layout(topo) {
  const nodes = new Map(topo.nodes.map(n => [n.id, n]));
  const vns = topo.nodes.filter(n => n.kind === 'vn');
  const nves = topo.nodes.filter(n => n.kind === 'nve');
  const tsOf = new Map(nves.map(n => [n.id, []]));
  const membersOf = new Map(vns.map(v => [v.id, []]));
  for (const e of topo.edges) {
    if (e.kind === 'attachment') {
      const [nve, ts] = nodes.get(e.source).kind === 'nve'
        ? [e.source, e.target] : [e.target, e.source];
      tsOf.get(nve).push(nodes.get(ts));
    } else if (e.kind === 'member') {
      const [vn, nve] = nodes.get(e.source).kind === 'vn'
        ? [e.source, e.target] : [e.target, e.source];
      membersOf.get(vn).push(nve);
    }
  }
  const slot = 120, tsSlot = 118;
  // Each NVE gets a column wide enough for its tenant systems.
  let x = 40;
  const pos = new Map();
  for (const nve of nves) {
    const tss = tsOf.get(nve.id).sort((a, b) =>
      (a.vnid - b.vnid) || a.mac.localeCompare(b.mac));
    const width = Math.max(slot, tss.length * tsSlot);
    pos.set(nve.id, {x: x + width / 2, y: 250});
    tss.forEach((ts, i) => pos.set(ts.id, {
      x: x + width / 2 + (i - (tss.length - 1) / 2) * tsSlot, y: 400}));
    x += width + 20;
  }
  // VNs above the mean of their members, then pushed apart.
  const vnPos = vns.map((vn, i) => {
    const m = membersOf.get(vn.id).map(id => pos.get(id).x);
    const want = m.length ? m.reduce((a, b) => a + b, 0) / m.length
                          : 40 + slot / 2 + i * slot;
    return {vn, x: want};
  }).sort((a, b) => a.x - b.x);
  let last = -Infinity;
  for (const p of vnPos) {
    p.x = Math.max(p.x, last + slot, 40 + slot / 2);
    last = p.x;
    pos.set(p.vn.id, {x: p.x, y: 70});
  }
  const width = Math.max(x + 20, last + slot / 2 + 40, 400);
  return {nodes, pos, width, height: 460};
}

/* --- drawing ----------------------------------------------------------- */

function draw(topo) {
  const svg = document.getElementById('topology');
  const {nodes, pos, width, height} = layout(topo);
  svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const gEdges = el('g'), gNodes = el('g');
  svg.append(gEdges, gNodes);
  for (const e of topo.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    if (e.kind === 'tunnel') {
      e.vnids.forEach((vnid, i) => {
        const lift = 40 + 14 * i + Math.abs(a.x - b.x) / 8;
        const d = 'M' + a.x + ',' + (a.y - 18) + ' Q' + (a.x + b.x) / 2 +
          ',' + (a.y - 18 - lift) + ' ' + b.x + ',' + (b.y - 18);
        const path = el('path', {d, fill: 'none', stroke: vnColour(vnid),
          'stroke-width': 2, 'stroke-dasharray': '6 4', opacity: 0.85});
        path.append(el('title', {}, 'tunnel VN ' + vnid));
        gEdges.append(path);
      });
    } else {
      const vnid = e.kind === 'member'
        ? nodes.get(e.source).vnid || nodes.get(e.target).vnid : e.vnid;
      gEdges.append(el('line', {x1: a.x, y1: a.y, x2: b.x, y2: b.y,
        stroke: vnColour(vnid), 'stroke-width': e.kind === 'member' ? 1.5 : 1,
        opacity: e.kind === 'member' ? 0.45 : 0.8}));
    }
  }
  for (const n of topo.nodes) {
    const p = pos.get(n.id);
    if (!p) continue;
    const g = el('g', {transform: 'translate(' + p.x + ',' + p.y + ')'});
    if (n.kind === 'vn') {
      g.append(el('rect', {x: -52, y: -18, width: 104, height: 36, rx: 18,
        fill: vnColour(n.vnid), opacity: 0.9}));
      g.append(el('text', {'text-anchor': 'middle', y: -2, fill: '#fff',
        style: 'fill:#fff;font-weight:600'}, n.name));
      g.append(el('text', {'text-anchor': 'middle', y: 12,
        style: 'fill:#fff;font-size:10px'}, n.vnid + ' ' + n.service +
        '/' + n.encap));
    } else if (n.kind === 'nve') {
      g.append(el('rect', {x: -50, y: -18, width: 100, height: 36, rx: 4,
        fill: n.connected ? '#fff' : '#eceef2',
        stroke: n.connected ? '#1d2330' : '#9aa1ae', 'stroke-width': 1.5,
        'stroke-dasharray': n.connected ? '' : '4 3'}));
      g.append(el('text', {'text-anchor': 'middle', y: -2,
        style: 'font-weight:600'}, n.label));
      g.append(el('text', {'text-anchor': 'middle', y: 12, class: 'small'},
        n.vtep_ip || 'no VTEP'));
      g.append(el('title', {}, 'NVE ' + n.dpid +
        (n.connected ? ' (connected)' : ' (disconnected)')));
    } else {
      g.append(el('circle', {r: 9, fill: vnColour(n.vnid)}));
      g.append(el('text', {'text-anchor': 'middle', y: 24, class: 'small'},
        n.mac));
      g.append(el('text', {'text-anchor': 'middle', y: 37, class: 'small'},
        (n.ips || []).join(' ')));
      g.append(el('title', {}, 'VN ' + n.vnid + ' ' + n.mac));
    }
    gNodes.append(g);
  }
  const legend = document.getElementById('legend');
  legend.replaceChildren();
  for (const n of topo.nodes.filter(m => m.kind === 'vn')) {
    const item = html('span');
    const sw = html('span', null, {class: 'swatch'});
    sw.style.background = vnColour(n.vnid);
    item.append(sw, document.createTextNode(n.vnid + ' ' + n.name));
    legend.append(item);
  }
  const count = kind => topo.nodes.filter(m => m.kind === kind).length;
  document.getElementById('counts').textContent = count('vn') + ' VNs, ' +
    count('nve') + ' NVEs, ' + count('ts') + ' tenant systems';
}

const COLUMNS = ['mac', 'ip', 'bid', 'vlan', 'nve', 'nve_ip', 'port',
                 'tunnel_if_id', 'origin'];

function drawTables(topo, mappings) {
  const box = document.getElementById('tables');
  box.replaceChildren();
  for (const vn of topo.nodes.filter(n => n.kind === 'vn')) {
    const title = html('div', 'VN ' + vn.vnid + ' ' + vn.name + ' (' +
      vn.service + ', ' + vn.encap + ')', {class: 'vn-title'});
    title.style.color = vnColour(vn.vnid);
    box.append(title);
    const rows = mappings[vn.vnid] || [];
    if (!rows.length) {
      box.append(html('div', 'no tenant systems', {class: 'empty'}));
      continue;
    }
    const table = html('table');
    const head = html('tr');
    for (const c of COLUMNS) head.append(html('th', c));
    table.append(head);
    for (const row of rows) {
      const tr = html('tr');
      for (const c of COLUMNS) tr.append(html('td', row[c] ?? '-'));
      table.append(tr);
    }
    box.append(table);
  }
}

function drawEvents() {
  const box = document.getElementById('events');
  const table = html('table');
  const head = html('tr');
  for (const c of ['seq', 'time', 'type', 'details']) head.append(html('th', c));
  table.append(head);
  for (const e of state.events.slice(-30).reverse()) {
    const tr = html('tr');
    const details = Object.entries(e)
      .filter(([k]) => !['seq', 'time', 'type'].includes(k))
      .map(([k, v]) => k + '=' + (v === null ? '-' : v)).join(' ');
    const t = new Date(e.time * 1000).toLocaleTimeString();
    tr.append(html('td', e.seq), html('td', t), html('td', e.type),
              html('td', details));
    table.append(tr);
  }
  box.replaceChildren(table);
}

/* --- refresh and follow ------------------------------------------------- */

async function refresh() {
  const topo = await getJSON('/v1/topology');
  const vnids = topo.nodes.filter(n => n.kind === 'vn').map(n => n.vnid);
  const lists = await Promise.all(vnids.map(v =>
    getJSON('/v1/vns/' + v + '/mappings').catch(() => [])));
  const mappings = {};
  vnids.forEach((v, i) => { mappings[v] = lists[i]; });
  state.topo = topo;
  draw(topo);
  drawTables(topo, mappings);
}

let pending = null;
function scheduleRefresh() {
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    refresh().catch(err => setStatus(false, String(err)));
  }, 200);
}

function setStatus(live, text) {
  const s = document.getElementById('status');
  s.className = live ? 'live' : 'down';
  s.textContent = text;
}

async function follow() {
  for (;;) {
    try {
      const url = state.since === null ? '/v1/events?limit=30'
        : '/v1/events?since=' + state.since + '&wait=25';
      const page = await getJSON(url);
      if (state.since !== null && page.seq < state.since) {
        state.events = [];       // the app restarted: start over
      }
      state.since = page.next_since;
      if (page.events.length) {
        state.events = state.events.concat(page.events).slice(-200);
        drawEvents();
        scheduleRefresh();
      }
      setStatus(true, 'live, event ' + page.seq);
    } catch (err) {
      setStatus(false, 'disconnected: ' + err.message + '; retrying');
      await new Promise(r => setTimeout(r, 2000));
    }
  }
}

refresh().catch(err => setStatus(false, String(err)));
follow();
