/*
 * Live view of the mapping authority (no libraries: the page must work
 * offline).  A layered layout is enough and stays readable as the testbed
 * grows: VNs on the top row (each above its member NVEs, lines showing
 * membership), NVEs in the middle, one column each, with the tenant systems
 * attached to an NVE listed under it (MAC and address, dot in the VN's
 * colour); tunnels are dashed arcs between member NVEs, one colour per VN.
 * A VN named after a colour ("blue", "red-dmz") is drawn in that colour;
 * the others take palette colours no such VN uses.  Each NVE box says
 * whether the NVE holds what it must (in sync, syncing, down) and how many
 * flows it must hold.
 * Interconnection (draft 4.3): a gateway NVE has a double border; each
 * interconnect is a diamond between the VN row and the NVE row, joined to
 * its two VNs and its gateway; an external network is a tag on its gateway.
 * The mapping tables show one row per tenant system (the authority keeps
 * one entry per MAC and IP) and name NVEs rather than print their dpids.
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
const COLOUR_WORDS = {
  blue: '#3568d4', red: '#d2493a', green: '#2e9d4f', purple: '#9a50c8',
  violet: '#9a50c8', orange: '#e08a1e', cyan: '#1b9aaa', teal: '#1b9aaa',
  pink: '#c2407d', magenta: '#c2407d', olive: '#6d8b1d', brown: '#7f5a3c',
  navy: '#4a5a8c', yellow: '#c9a400', gold: '#c9a400', grey: '#7a7f87',
  gray: '#7a7f87', black: '#2b2f36',
};
const state = {since: null, events: [], topo: null, mappings: {},
               vnNames: {}, nveStatus: {}};

function colourWord(name) {
  for (const word of String(name || '').toLowerCase().split(/[^a-z]+/)) {
    if (COLOUR_WORDS[word]) return COLOUR_WORDS[word];
  }
  return null;
}

function vnColour(vnid) {
  // A colour word in the VN's name decides; the others never take a
  // colour a named VN shows, so "blue" is the only blue one.
  const named = colourWord(state.vnNames[vnid]);
  if (named) return named;
  const taken = new Set(Object.values(state.vnNames).map(colourWord));
  const free = PALETTE.filter(c => !taken.has(c));
  const choices = free.length ? free : PALETTE;
  return choices[Math.abs(vnid) % choices.length];
}

// What an NVE box says of its flows: the sync state (/v1/sync) and how
// many flows it must hold (/v1/nves).
function nveStatusText(dpid) {
  const st = state.nveStatus[dpid];
  if (!st) return '';
  return st.state + (st.connected ? ' \u00b7 ' + st.flows + ' flows' : '') +
    (st.failed ? ' \u00b7 ' + st.failed + ' refused' : '');
}

const STATE_COLOUR = {'in-sync': '#2e9d4f', down: '#9aa1ae',
                      failed: '#d2493a'};

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

/* Where the authority checks who asks (docs/contracts.md, authentication)
 * the page sends a token with every request: given once in the address
 * as #token=... (a fragment never reaches a server, and is taken out of the
 * address at once) or asked for when the API answers 401; it is kept for
 * this tab only (sessionStorage).  A reader token is enough. */
const TOKEN_KEY = 'nvo3-token';
(function takeTokenFromAddress() {
  const found = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (found) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(found[1]));
    history.replaceState(null, '', window.location.pathname);
  }
})();
let asking = null;

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? {Authorization: 'Bearer ' + token} : {};
}

function askToken() {
  // One question however many requests were refused at once.
  asking = asking || Promise.resolve().then(() => {
    const token = window.prompt('This mapping authority needs a token ' +
                                '(a reader token is enough):');
    if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
    asking = null;
    return Boolean(token);
  });
  return asking;
}

async function getJSON(path) {
  let resp = await fetch(path, {cache: 'no-store', headers: authHeaders()});
  if (resp.status === 401 && await askToken()) {
    resp = await fetch(path, {cache: 'no-store', headers: authHeaders()});
  }
  if (!resp.ok) throw new Error(path + ': HTTP ' + resp.status);
  return resp.json();
}

/* --- layout ------------------------------------------------------------ */

// Geometry in SVG units; the drawing is scaled to the section's width, so
// these are pixels when the topology fits (Figure 1 does at 1400 px).
const G = {
  margin: 12, colW: 224, colGap: 12,   // one column per NVE
  vnY: 30, vnW: 112, vnH: 32, vnGap: 12,
  nveY: 184, nveW: 196, nveH: 54,
  tsY: 240, tsRow: 18,                 // tenant-system list under its NVE
};

function isLinkLocal(ip) { return /^fe80:/i.test(ip); }

function tsLabelIp(ts) {
  const ips = ts.ips || [];
  return ips.find(ip => !ip.includes(':')) ||
    ips.find(ip => !isLinkLocal(ip)) || '';
}

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
  // One column per NVE: its box, and its tenant systems listed below it.
  const pos = new Map();
  let x = G.margin, rows = 0;
  for (const nve of nves) {
    const tss = tsOf.get(nve.id).sort((a, b) =>
      (a.vnid - b.vnid) || a.mac.localeCompare(b.mac));
    pos.set(nve.id, {x: x + G.colW / 2, y: G.nveY, left: x, tss});
    tss.forEach((ts, i) => pos.set(ts.id, {
      x: x + 22, y: G.tsY + i * G.tsRow}));
    rows = Math.max(rows, tss.length);
    x += G.colW + G.colGap;
  }
  // VNs above the mean of their members, then pushed apart (and back
  // inside the drawing if the last one was pushed past the right edge).
  const step = G.vnW + G.vnGap;
  const vnPos = vns.map((vn, i) => {
    const m = membersOf.get(vn.id).map(id => pos.get(id).x);
    const want = m.length ? m.reduce((a, b) => a + b, 0) / m.length
                          : G.margin + G.vnW / 2 + i * step;
    return {vn, x: want};
  }).sort((a, b) => a.x - b.x);
  let last = -Infinity;
  for (const p of vnPos) {
    p.x = Math.max(p.x, last + step, G.margin + G.vnW / 2);
    last = p.x;
  }
  const width = Math.max(x - G.colGap + G.margin, last + G.vnW / 2 + G.margin,
                         600);
  for (const p of vnPos) pos.set(p.vn.id, {x: p.x, y: G.vnY});
  const height = G.tsY + Math.max(rows, 1) * G.tsRow;
  // Interconnects: a diamond under the middle of their two VNs.
  topo.nodes.filter(n => n.kind === 'interconnect').forEach((ic, i) => {
    const xs = (ic.vns || []).map(v => pos.get('vn:' + v))
      .filter(Boolean).map(p => p.x);
    const x = xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length
                        : G.margin + 40 + i * 60;
    pos.set(ic.id, {x, y: G.vnY + G.vnH / 2 + 34 + (i % 3) * 18});
  });
  return {nodes, pos, width, height, nves};
}

/* --- drawing ----------------------------------------------------------- */

function draw(topo) {
  const svg = document.getElementById('topology');
  const {nodes, pos, width, height, nves} = layout(topo);
  svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
  // Scale only down (a small testbed keeps its natural size), and not below
  // 3/4: past that the section scrolls sideways rather than shrink the text.
  svg.style.maxWidth = width + 'px';
  svg.style.minWidth = Math.round(width * 0.75) + 'px';
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const gEdges = el('g'), gTunnels = el('g'), gNodes = el('g');
  svg.append(gEdges, gTunnels, gNodes);
  const top = G.nveY - G.nveH / 2, bottom = G.nveY + G.nveH / 2;
  for (const e of topo.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    if (e.kind === 'tunnel') {
      // An arc over the NVE row per VN; several VNs between the same two
      // NVEs get nested arcs, each ending a little apart on the boxes.
      // Arcs stay below the VN row (lift is the height of the top).
      const [l, r] = a.x < b.x ? [a, b] : [b, a];
      const maxLift = top - (G.vnY + G.vnH / 2) - 12;
      e.vnids.forEach((vnid, i) => {
        const off = 8 * i;
        const lift = Math.min(maxLift, 28 + 14 * i +
          (maxLift - 28) * (1 - Math.exp(-(r.x - l.x) / 450)));
        const x1 = l.x + 24 + off, x2 = r.x - 24 - off;
        const d = 'M' + x1 + ',' + top + ' Q' + (x1 + x2) / 2 + ',' +
          (top - 2 * lift) + ' ' + x2 + ',' + top;
        const path = el('path', {d, fill: 'none', stroke: vnColour(vnid),
          'stroke-width': 2, 'stroke-dasharray': '6 4', opacity: 0.9});
        path.append(el('title', {}, 'tunnel for VN ' + vnid + ': ' +
          nodes.get(e.source).label + ' \u2194 ' + nodes.get(e.target).label));
        gTunnels.append(path);
      });
    } else if (e.kind === 'member') {
      const [vn, nve] = nodes.get(e.source).kind === 'vn' ? [a, b] : [b, a];
      const vnid = nodes.get(e.source).vnid || nodes.get(e.target).vnid;
      gEdges.append(el('line', {x1: vn.x, y1: vn.y + G.vnH / 2,
        x2: nve.x, y2: top, stroke: vnColour(vnid), 'stroke-width': 1.5,
        opacity: 0.35}));
    } else if ((e.kind === 'joins' || e.kind === 'gateway') &&
               [e.source, e.target].some(
                 id => nodes.get(id).kind === 'interconnect')) {
      const [ic, other] = nodes.get(e.source).kind === 'interconnect'
        ? [a, b] : [b, a];
      const toNve = e.kind === 'gateway';
      gEdges.append(el('line', {x1: ic.x, y1: ic.y,
        x2: other.x, y2: toNve ? top : other.y + G.vnH / 2,
        stroke: toNve ? '#1d2330' : vnColour(e.vnid), 'stroke-width': 2,
        'stroke-dasharray': toNve ? '2 3' : '', class: 'interconnect-edge'}));
    }
  }
  // NVE columns: box, a trunk down its left side, one row per tenant system.
  for (const nve of nves) {
    const p = pos.get(nve.id);
    const g = el('g');
    const bx = p.x - G.nveW / 2;
    if (p.tss.length) {
      const trunkX = bx + 10;
      const lastY = G.tsY + (p.tss.length - 1) * G.tsRow;
      g.append(el('line', {x1: trunkX, y1: bottom, x2: trunkX, y2: lastY,
        stroke: '#9aa1ae', 'stroke-width': 1.2}));
      p.tss.forEach((ts, i) => {
        const y = G.tsY + i * G.tsRow;
        const colour = vnColour(ts.vnid);
        const row = el('g', {class: 'ts'});
        row.append(el('line', {x1: trunkX, y1: y, x2: bx + 22, y2: y,
          stroke: colour, 'stroke-width': 1.2}));
        row.append(el('circle', {cx: bx + 26, cy: y, r: 5, fill: colour}));
        row.append(el('text', {x: bx + 36, y: y + 4, class: 'mac'}, ts.mac));
        row.append(el('text', {x: bx + 148, y: y + 4, class: 'small'},
          tsLabelIp(ts)));
        row.append(el('title', {}, 'tenant system in VN ' + ts.vnid + '\n' +
          ts.mac + '\n' + (ts.ips || []).join('\n') +
          (ts.origin ? '\norigin: ' + ts.origin : '')));
        g.append(row);
      });
    }
    const gateway = nve.role === 'gateway';
    if (gateway) {
      g.setAttribute('class', 'gateway');
      g.append(el('rect', {x: bx - 4, y: top - 4, width: G.nveW + 8,
        height: G.nveH + 8, rx: 7, fill: 'none', stroke: '#1d2330',
        'stroke-width': 1}));
    }
    g.append(el('rect', {x: bx, y: top, width: G.nveW, height: G.nveH,
      rx: 5, fill: nve.connected ? '#fff' : '#eceef2',
      stroke: nve.connected ? '#1d2330' : '#9aa1ae', 'stroke-width': 1.5,
      'stroke-dasharray': nve.connected ? '' : '4 3'}));
    g.append(el('text', {x: p.x, y: G.nveY - 9, 'text-anchor': 'middle',
      class: 'nve-name'}, nve.label + (gateway ? ' (gateway)' : '')));
    const externals = topo.nodes.filter(
      m => m.kind === 'external' && 'nve:' + m.gateway === nve.id);
    externals.forEach((ext, i) => {
      const tag = el('g', {class: 'external'});
      tag.append(el('text', {x: bx + G.nveW, y: bottom + 12 + 12 * i,
        'text-anchor': 'end', class: 'small'},
        'external ' + ext.label + ' @ ' + ext.port + ' → VN ' +
        (ext.vnids || []).join(', ')));
      tag.append(el('title', {}, 'external network ' + ext.label +
        ' on port ' + ext.port));
      g.append(tag);
    });
    g.append(el('text', {x: p.x, y: G.nveY + 5, 'text-anchor': 'middle',
      class: 'small'}, (nve.vtep_ip ? 'VTEP ' + nve.vtep_ip : 'no VTEP') +
      (nve.connected ? '' : ' \u00b7 down')));
    const st = state.nveStatus[nve.dpid];
    if (st) {
      const colour = STATE_COLOUR[st.failed ? 'failed' : st.state] ||
        '#e08a1e';
      g.append(el('circle', {cx: bx + 12, cy: G.nveY + 15, r: 4,
        fill: colour}));
      g.append(el('text', {x: p.x, y: G.nveY + 19, 'text-anchor': 'middle',
        class: 'small nve-sync'}, nveStatusText(nve.dpid)));
    }
    g.append(el('title', {}, nve.evpn
      ? 'EVPN VTEP ' + nve.vtep_ip + '\n(a BGP EVPN peer\'s, not ours)'
      : 'NVE ' + nve.label + '\ndpid ' + nve.dpid +
        (nve.connected ? '\nconnected' : '\ndisconnected')));
    gNodes.append(g);
  }
  for (const ic of topo.nodes.filter(n => n.kind === 'interconnect')) {
    const p = pos.get(ic.id);
    const g = el('g', {class: 'interconnect',
      transform: 'translate(' + p.x + ',' + p.y + ')'});
    g.append(el('path', {d: 'M0,-9 L9,0 L0,9 L-9,0 Z', fill: '#fff',
      stroke: '#1d2330', 'stroke-width': 1.5}));
    g.append(el('text', {x: 13, y: 4, class: 'small'},
      ic.label + ' · ' + ic.ic_kind));
    g.append(el('title', {}, 'interconnect ' + ic.label + ' (' + ic.ic_kind +
      '): VNs ' + (ic.vns || []).join(' ↔ ') + ' through ' +
      ic.gateway));
    gNodes.append(g);
  }
  for (const vn of topo.nodes.filter(n => n.kind === 'vn')) {
    const p = pos.get(vn.id);
    const g = el('g', {transform: 'translate(' + p.x + ',' + p.y + ')'});
    g.append(el('rect', {x: -G.vnW / 2, y: -G.vnH / 2, width: G.vnW,
      height: G.vnH, rx: G.vnH / 2, fill: vnColour(vn.vnid)}));
    g.append(el('text', {'text-anchor': 'middle', y: -2, class: 'vn-name'},
      vn.name));
    g.append(el('text', {'text-anchor': 'middle', y: 11, class: 'vn-info'},
      vn.vnid + ' \u00b7 ' + vn.service + '/' + vn.encap));
    g.append(el('title', {}, 'VN ' + vn.vnid + ' ' + vn.name));
    gNodes.append(g);
  }
  const legend = document.getElementById('legend');
  legend.replaceChildren();
  for (const n of topo.nodes.filter(m => m.kind === 'vn')) {
    const item = html('span');
    const sw = html('span', null, {class: 'swatch'});
    sw.style.background = vnColour(n.vnid);
    item.append(sw, document.createTextNode(n.name + ' (' + n.vnid + ')'));
    legend.append(item);
  }
  for (const [cls, text] of [['dashed', 'tunnel between member NVEs'],
                             ['solid', 'VN membership']]) {
    const item = html('span', null, {class: 'hint'});
    item.append(html('span', null, {class: 'stroke ' + cls}),
                document.createTextNode(text));
    legend.append(item);
  }
  const count = kind => topo.nodes.filter(m => m.kind === kind).length;
  document.getElementById('counts').textContent = count('vn') + ' VNs, ' +
    count('nve') + ' NVEs, ' + count('ts') + ' tenant systems' +
    (count('interconnect') ? ', ' + count('interconnect') + ' interconnects'
                           : '') +
    (count('external') ? ', ' + count('external') + ' external networks'
                       : '');
}

// Mapping-table columns: [field, heading].  A column empty in every row of
// a VN's table is left out of that table (VLAN and BID often are).
const COLUMNS = [['mac', 'TS MAC'], ['ip', 'TS IP'], ['nve', 'NVE'],
                 ['nve_ip', 'VTEP IP'], ['port', 'port'], ['vlan', 'VLAN'],
                 ['bid', 'BID'], ['tunnel_if_id', 'tunnel'],
                 ['origin', 'origin']];

// The authority keeps one entry per (MAC, IP); the table shows one row per
// tenant system, its addresses together.
function groupRows(rows) {
  const out = new Map();
  for (const row of rows) {
    const key = JSON.stringify(COLUMNS.filter(([c]) => c !== 'ip')
      .map(([c]) => row[c] ?? null));
    if (!out.has(key)) out.set(key, Object.assign({}, row, {ips: []}));
    if (row.ip) out.get(key).ips.push(row.ip);
  }
  for (const row of out.values()) {
    row.ips.sort((a, b) => isLinkLocal(a) - isLinkLocal(b) ||
                           a.includes(':') - b.includes(':'));
  }
  return [...out.values()];
}

function nveNames(topo) {
  return new Map(topo.nodes.filter(n => n.kind === 'nve' && !n.evpn)
    .map(n => [n.dpid, n.label]));
}

function drawTables(topo, mappings) {
  const box = document.getElementById('tables');
  const names = nveNames(topo);
  box.replaceChildren();
  for (const vn of topo.nodes.filter(n => n.kind === 'vn')) {
    const rows = groupRows(mappings[vn.vnid] || []);
    const title = html('div', null, {class: 'vn-title'});
    const sw = html('span', null, {class: 'swatch'});
    sw.style.background = vnColour(vn.vnid);
    title.append(sw, html('span', vn.name, {class: 'vn-label'}),
      html('span', 'VN ' + vn.vnid + ' \u00b7 ' + vn.service + ', ' +
        vn.encap + ' \u00b7 ' + rows.length + ' tenant system' +
        (rows.length === 1 ? '' : 's'), {class: 'muted'}));
    box.append(title);
    if (!rows.length) {
      box.append(html('div', 'no tenant systems', {class: 'empty'}));
      continue;
    }
    const cols = COLUMNS.filter(([c]) => c === 'mac' || c === 'ip' ||
      rows.some(r => r[c] !== null && r[c] !== undefined && r[c] !== ''));
    const table = html('table', null, {class: 'mappings'});
    const head = html('tr');
    for (const [c, h] of cols) head.append(html('th', h, {class: 'c-' + c}));
    table.append(html('thead'));
    table.firstChild.append(head);
    const body = html('tbody');
    for (const row of rows) {
      const tr = html('tr');
      for (const [c] of cols) {
        let td;
        if (c === 'ip') {
          td = html('td', null, {class: 'c-ip'});
          row.ips.forEach((ip, i) => {
            if (i) td.append(document.createTextNode(' '));
            td.append(html('span', ip, isLinkLocal(ip) ? {class: 'muted'}
                                                       : {}));
          });
          if (!row.ips.length) td.textContent = '-';
        } else if (c === 'nve' && row.nve === null) {
          // imported from a BGP EVPN peer: behind its VTEP
          td = html('td', 'EVPN ' + row.nve_ip, {title: 'origin evpn'});
        } else if (c === 'nve') {
          td = html('td', names.get(row.nve) || row.nve,
                    {title: 'dpid ' + row.nve});
        } else {
          td = html('td', row[c] ?? '-');
        }
        tr.append(td);
      }
      body.append(tr);
    }
    table.append(body);
    box.append(table);
  }
}

function pad2(n) { return String(n).padStart(2, '0'); }

function clock(seconds) {
  const d = new Date(seconds * 1000);
  return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' +
    pad2(d.getSeconds());
}

function drawEvents() {
  const box = document.getElementById('events');
  const names = state.topo ? nveNames(state.topo) : new Map();
  const table = html('table', null, {class: 'events'});
  const head = html('tr');
  for (const c of ['#', 'time', 'type', 'details']) head.append(html('th', c));
  table.append(head);
  for (const e of state.events.slice(-40).reverse()) {
    const tr = html('tr');
    const details = Object.entries(e)
      .filter(([k, v]) => !['seq', 'time', 'type'].includes(k) &&
                          v !== null && v !== undefined)
      .map(([k, v]) => k + '=' + (k === 'nve' && names.has(v)
        ? names.get(v) : (typeof v === 'object' ? JSON.stringify(v) : v)))
      .join(' ');
    tr.append(html('td', e.seq), html('td', clock(e.time)),
              html('td', e.type, {class: 'ev-type'}),
              html('td', details, {class: 'details'}));
    table.append(tr);
  }
  box.replaceChildren(table);
}

/* --- refresh and follow ------------------------------------------------- */

async function refresh() {
  const topo = await getJSON('/v1/topology');
  const vnids = topo.nodes.filter(n => n.kind === 'vn').map(n => n.vnid);
  const [lists, sync, nves] = await Promise.all([
    Promise.all(vnids.map(v =>
      getJSON('/v1/vns/' + v + '/mappings').catch(() => []))),
    getJSON('/v1/sync').catch(() => null),
    getJSON('/v1/nves').catch(() => [])]);
  state.vnNames = {};
  for (const n of topo.nodes.filter(m => m.kind === 'vn')) {
    state.vnNames[n.vnid] = n.name;
  }
  state.nveStatus = {};
  for (const nve of nves) {
    state.nveStatus[nve.dpid] = {
      state: (sync && sync.states && sync.states[nve.dpid]) ||
        (nve.connected ? (nve.in_sync ? 'in-sync' : 'syncing') : 'down'),
      connected: nve.connected, flows: nve.flows_desired,
      failed: nve.flows_failed || 0};
  }
  const mappings = {};
  vnids.forEach((v, i) => { mappings[v] = lists[i]; });
  state.topo = topo;
  draw(topo);
  drawTables(topo, mappings);
  drawEvents();                 // NVE names may have become known
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

// Flows are acknowledged without an event: the NVE boxes follow /v1/sync
// (a redraw only when a state or a flow count changed).
async function pollSync() {
  try {
    const nves = await getJSON('/v1/nves');
    const sync = await getJSON('/v1/sync');
    const changed = nves.some(n => {
      const st = state.nveStatus[n.dpid];
      return !st || st.state !== (sync.states || {})[n.dpid] ||
        st.flows !== n.flows_desired || st.failed !== (n.flows_failed || 0);
    });
    if (changed) scheduleRefresh();
  } catch (err) {
    // follow() reports a lost connection.
  }
  setTimeout(pollSync, 3000);
}

refresh().catch(err => setStatus(false, String(err)));
follow();
setTimeout(pollSync, 3000);
