// Switchboard web chat widget. Embedded by a site with a script tag carrying
// data-channel (and optionally data-user-id, data-user-name, data-user-hash,
// data-color, data-title); it talks to the visitor API of docs/api.md on the
// origin it was loaded from. The UI lives in a shadow root so the host page's
// CSS cannot reach it, and every piece of data is rendered as text.
(() => {
  'use strict';
  if (window.Switchboard && window.Switchboard.root) return; // loaded twice

  const script = document.currentScript ||
    [...document.querySelectorAll('script[data-channel]')].find((s) => /\/widget\.js([?#]|$)/.test(s.src));
  if (!script || !script.dataset.channel) {
    console.warn('switchboard: widget.js needs a data-channel attribute');
    return;
  }
  const opt = script.dataset;
  const channel = opt.channel;
  const ORIGIN = new URL(script.src, location.href).origin;
  const WS_ORIGIN = ORIGIN.replace(/^http/, 'ws');
  const KEY = 'switchboard:' + channel + ':';
  const SVGNS = 'http://www.w3.org/2000/svg';

  const store = {
    get(k) { try { return localStorage.getItem(KEY + k); } catch { return null; } },
    set(k, v) {
      try { if (v == null) localStorage.removeItem(KEY + k); else localStorage.setItem(KEY + k, String(v)); } catch { /* storage blocked */ }
    },
  };

  // ---- DOM helpers (text only: strings become Text nodes) ----
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'testid') el.setAttribute('data-testid', v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of kids.flat()) if (c != null && c !== false) el.append(c);
    return el;
  }
  function icon(d, size = 20) {
    const svg = document.createElementNS(SVGNS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('width', size);
    svg.setAttribute('height', size);
    svg.setAttribute('aria-hidden', 'true');
    const p = document.createElementNS(SVGNS, 'path');
    p.setAttribute('d', d);
    svg.append(p);
    return svg;
  }
  const ICON = {
    chat: 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z',
    close: 'M6 6l12 12M18 6L6 18',
    clip: 'M21 11.5l-8.6 8.6a5.5 5.5 0 0 1-7.8-7.8l8.6-8.6a3.7 3.7 0 0 1 5.2 5.2l-8.6 8.6a1.8 1.8 0 0 1-2.6-2.6l8-8',
    send: 'M3 11l18-8-8 18-2-8-8-2z',
  };
  function safeURL(u) {
    try {
      const url = new URL(u, ORIGIN);
      return ['http:', 'https:', 'blob:'].includes(url.protocol) ? url.href : null;
    } catch { return null; }
  }
  function fmtTime(s) {
    const t = new Date(s);
    if (isNaN(t)) return '';
    const o = { hour: '2-digit', minute: '2-digit' };
    if (t.toDateString() !== new Date().toDateString()) Object.assign(o, { month: 'short', day: 'numeric' });
    return t.toLocaleString([], o);
  }
  const fmtSize = (n) => (n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KB' : (n / 1048576).toFixed(1) + ' MB');
  function newID() {
    if (crypto.randomUUID) return crypto.randomUUID();
    return 'c-' + Date.now().toString(36) + '-' + Math.random().toString(36).slice(2);
  }
  function linkify(text) {
    const out = [];
    const re = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
    let last = 0, m;
    while ((m = re.exec(text))) {
      out.push(text.slice(last, m.index));
      const href = safeURL(m[0]);
      out.push(href ? h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, m[0]) : m[0]);
      last = m.index + m[0].length;
    }
    out.push(text.slice(last));
    return out;
  }

  // ---- HTTP ----
  const apiError = (status, code, message) => Object.assign(new Error(message), { status, code });
  async function req(method, path, body, headers = {}) {
    let res;
    try {
      res = await fetch(ORIGIN + path, {
        method, headers: body && !(body instanceof FormData) ? { 'Content-Type': 'application/json', ...headers } : headers,
        body: body instanceof FormData ? body : body ? JSON.stringify(body) : undefined,
        credentials: 'omit', mode: 'cors',
      });
    } catch {
      throw apiError(0, 'network', 'Network error — check your connection.');
    }
    let data = null;
    try { data = await res.json(); } catch { /* empty body */ }
    if (!res.ok) {
      const e = (data && data.error) || {};
      throw apiError(res.status, e.code || 'http_' + res.status, e.message || 'Request failed (' + res.status + ').');
    }
    return data;
  }

  // ---- state ----
  const S = {
    token: null, conv: null, convAt: 0, lastSeq: 0, loaded: false, fatal: '',
    recs: [], byID: new Map(), byClient: new Map(),
    ws: null, connected: false, everOpened: false, busy: false, attempt: 0, failedOpens: 0, retryTimer: 0, pingTimer: 0, lastFrame: 0,
    open: false, online: true, config: null, starting: null,
    typingSentAt: 0, typingStop: 0, typingHide: 0, lastSent: null,
  };
  // Reuse the stored token unless it belongs to another signed-in user (or a
  // user who signed out: their history must not show to the next visitor).
  // An anonymous token is kept when a user signs in, so its history moves over.
  const storedUser = store.get('user') || '';
  if (!storedUser || storedUser === (opt.userId || '')) S.token = store.get('token');
  const readMark = () => { const [c, s] = (store.get('read') || '').split(':'); return c && c === S.conv ? +s || 0 : 0; };

  // ---- UI ----
  const host = h('div', { id: 'switchboard-widget' });
  const root = host.attachShadow({ mode: 'open' });
  const sheetText = CSS_TEXT();
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(sheetText);
    root.adoptedStyleSheets = [sheet];
  } catch {
    root.append(h('style', null, sheetText)); // older engines; needs the host CSP to allow it
  }

  const badge = h('span', { class: 'badge', testid: 'sb-unread', hidden: true });
  const launcher = h('button', { class: 'launcher', type: 'button', testid: 'sb-launcher', 'aria-label': 'Open chat', 'aria-expanded': 'false', onclick: () => (S.open ? close() : open()) },
    icon(ICON.chat, 26), badge);
  const titleEl = h('div', { class: 'title', id: 'sb-title' }, 'Chat with us');
  const stateEl = h('div', { class: 'state', testid: 'sb-state' });
  const header = h('header', null,
    h('div', { class: 'head' }, titleEl, stateEl),
    h('button', { class: 'icon close', type: 'button', testid: 'sb-close', 'aria-label': 'Close chat', onclick: () => close() }, icon(ICON.close)));
  const offline = h('div', { class: 'banner offline', testid: 'sb-offline', role: 'status', hidden: true },
    'Agents are offline — leave a message and we\u2019ll reply here.');
  const reconnecting = h('div', { class: 'banner reconnecting', testid: 'sb-reconnecting', role: 'status', hidden: true }, 'Reconnecting\u2026');
  const greeting = h('div', { class: 'greeting', testid: 'sb-greeting', hidden: true });
  const list = h('div', { class: 'list', testid: 'sb-messages', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages' }, greeting);
  const typing = h('div', { class: 'typing', testid: 'sb-typing', 'aria-live': 'polite', hidden: true });
  const toast = h('div', { class: 'toast', testid: 'sb-error', role: 'alert', hidden: true });
  const fileInput = h('input', { type: 'file', testid: 'sb-file', hidden: true, multiple: true, tabindex: '-1' });
  const attach = h('button', { class: 'icon attach', type: 'button', testid: 'sb-attach', 'aria-label': 'Attach a file', onclick: () => fileInput.click() }, icon(ICON.clip));
  const input = h('textarea', { testid: 'sb-input', rows: '1', maxlength: '8000', placeholder: 'Write a message\u2026', 'aria-label': 'Message' });
  const sendBtn = h('button', { class: 'icon send', type: 'submit', testid: 'sb-send', 'aria-label': 'Send' }, icon(ICON.send));
  const composer = h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); sendText(); } }, fileInput, attach, input, sendBtn);
  const panel = h('section', { class: 'panel', testid: 'sb-panel', role: 'dialog', 'aria-labelledby': 'sb-title', hidden: true },
    header, offline, reconnecting, list, typing, toast, composer);
  root.append(launcher, panel);

  function applyLook(cfg) {
    const title = opt.title || (cfg && cfg.title) || 'Chat with us';
    titleEl.textContent = title;
    launcher.setAttribute('aria-label', 'Open chat: ' + title);
    const color = [opt.color, cfg && cfg.color].find((c) => c && CSS.supports('color', c));
    if (color) {
      host.style.setProperty('--sb-brand', color);
      // Pick readable text on the brand colour from its computed luminance.
      const probe = h('span');
      probe.style.color = color;
      root.append(probe);
      const [r, g, b] = (getComputedStyle(probe).color.match(/[\d.]+/g) || [0, 0, 0]).map(Number);
      probe.remove();
      host.style.setProperty('--sb-on-brand', 0.2126 * r + 0.7152 * g + 0.0722 * b > 160 ? '#111827' : '#ffffff');
    }
    if (cfg && cfg.greeting) { greeting.textContent = cfg.greeting; greeting.hidden = false; }
    const up = cfg && cfg.upload;
    attach.hidden = !!cfg && !(up && up.max_bytes > 0);
    if (up && Array.isArray(up.types) && up.types.length) fileInput.setAttribute('accept', up.types.join(','));
  }
  function setOnline(on) {
    S.online = on;
    offline.hidden = on;
    stateEl.textContent = on ? 'Online \u2014 we reply in a few minutes' : 'Offline';
    stateEl.className = 'state ' + (on ? 'on' : 'off');
  }
  function setBanner() {
    reconnecting.hidden = S.connected || !S.token || !!S.fatal || (S.attempt === 0 && !S.everOpened);
  }
  let toastTimer = 0;
  function showError(msg) {
    toast.textContent = msg;
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.hidden = true; }, 7000);
  }

  // ---- messages ----
  // A record is one bubble: a stored MESSAGE, or a local send not yet acked
  // (keyed by its client_id). Acks and message frames both arrive, so records
  // are found by id first, then by client_id.
  function renderParts(m) {
    if (m.recalled_at) return [h('em', { class: 'recalled', testid: 'sb-recalled' }, 'message recalled')];
    const out = [];
    for (const p of m.parts || []) {
      const url = p.url && safeURL(p.url);
      switch (p.type) {
        case 'text':
          if (p.text) out.push(h('p', { class: 'text' }, linkify(p.text)));
          break;
        case 'image':
          out.push(url
            ? h('a', { class: 'img', href: url, target: '_blank', rel: 'noopener noreferrer', 'aria-label': 'Open image ' + (p.name || '') },
              h('img', { src: url, alt: p.name || 'image', loading: 'lazy', testid: 'sb-image' }))
            : h('p', { class: 'file' }, '\u{1F5BC} ' + (p.name || 'image')));
          break;
        case 'card': {
          const body = [h('strong', null, p.title || ''), p.description ? h('span', null, p.description) : null];
          const href = p.url && safeURL(p.url);
          out.push(href ? h('a', { class: 'card', href, target: '_blank', rel: 'noopener noreferrer' }, body) : h('div', { class: 'card' }, body));
          break;
        }
        default: {
          // file, and what a visitor's browser rarely gets (audio, video, location): a labelled link.
          const label = '\u{1F4CE} ' + (p.name || p.label || p.type || 'file') + (p.size ? ' \u00b7 ' + fmtSize(p.size) : '');
          out.push(url ? h('a', { class: 'file', href: url, target: '_blank', rel: 'noopener noreferrer', download: p.name || true }, label) : h('p', { class: 'file' }, label));
        }
      }
    }
    return out;
  }
  function recStatus(r) {
    if (r.local) return r.status; // sending | failed
    if (r.msg.direction === 'in') return 'sent';
    return r.msg.status || 'sent';
  }
  function renderRec(r) {
    const m = r.msg;
    const mine = m.direction === 'in';
    const system = m.sender && m.sender.type === 'system';
    const status = recStatus(r);
    const meta = h('div', { class: 'meta' });
    if (!mine && !system && m.sender && m.sender.name) meta.append(h('span', { class: 'who' }, m.sender.name));
    meta.append(h('time', { datetime: m.created_at || '' }, fmtTime(m.created_at)));
    if (mine) {
      if (status === 'sending') meta.append(h('span', { class: 'st' }, r.progress || 'Sending\u2026'));
      else if (status === 'failed') {
        meta.append(h('span', { class: 'st failed' }, 'Failed'),
          h('button', { class: 'retry', type: 'button', testid: 'sb-retry', onclick: () => transmit(r) }, 'Retry'));
      } else meta.append(h('span', { class: 'st ok', 'aria-label': 'Sent' }, 'Sent \u2713'));
    }
    const el = h('div', {
      class: 'msg ' + (system ? 'sys' : mine ? 'mine' : 'theirs') + (m.recalled_at ? ' is-recalled' : ''),
      testid: 'sb-msg', 'data-direction': m.direction || 'in', 'data-status': status,
      'data-id': m.id || null, 'data-client-id': r.clientId || m.client_id || null, 'data-seq': m.seq || null,
    }, h('div', { class: 'bubble' }, renderParts(m)), meta);
    if (r.el) r.el.replaceWith(el);
    r.el = el;
  }
  function orderKey(r) {
    if (r.local) return [Infinity, r.t];
    return [Date.parse(r.msg.created_at) || 0, r.msg.seq || 0];
  }
  function before(a, b) {
    const x = orderKey(a), y = orderKey(b);
    return x[0] < y[0] || (x[0] === y[0] && x[1] < y[1]);
  }
  function place(r) {
    let i = S.recs.indexOf(r);
    if (i >= 0) S.recs.splice(i, 1);
    i = S.recs.length;
    while (i > 0 && before(r, S.recs[i - 1])) i--;
    S.recs.splice(i, 0, r);
    const next = S.recs[i + 1];
    if (next) list.insertBefore(r.el, next.el); else list.append(r.el);
  }
  function nearBottom() { return list.scrollHeight - list.scrollTop - list.clientHeight < 80; }
  function scrollDown() { list.scrollTop = list.scrollHeight; }

  function upsert(m, clientID) {
    if (!m || !m.id) return;
    const cid = clientID || m.client_id;
    let r = S.byID.get(m.id) || (cid && S.byClient.get(cid));
    const fresh = !r;
    const at = Date.parse(m.created_at) || 0;
    if (m.conversation_id && m.conversation_id !== S.conv && at >= S.convAt) {
      S.conv = m.conversation_id;
      S.lastSeq = 0;
    }
    if (m.conversation_id === S.conv || !S.conv) {
      if (m.seq > S.lastSeq) S.lastSeq = m.seq;
      if (at > S.convAt) S.convAt = at;
    }
    const stick = nearBottom();
    if (!r) r = { t: Date.now() };
    if (r.local && r.blob) URL.revokeObjectURL(r.blob);
    clearTimeout(r.timer);
    Object.assign(r, { msg: m, local: false, blob: null });
    if (cid) { r.clientId = cid; S.byClient.set(cid, r); }
    S.byID.set(m.id, r);
    renderRec(r);
    place(r);
    if (fresh && m.direction === 'out' && S.loaded) typingIn(false);
    if (stick || (fresh && m.direction === 'in')) scrollDown();
    updateUnread();
  }
  function resetMessages() {
    for (const r of S.recs) r.el.remove();
    S.recs = [];
    S.byID.clear();
    S.byClient.clear();
    S.conv = null;
    S.convAt = 0;
    S.lastSeq = 0;
    S.loaded = false;
  }

  function updateUnread() {
    if (S.open && document.visibilityState === 'visible' && S.conv) {
      if (S.lastSeq > readMark()) store.set('read', S.conv + ':' + S.lastSeq);
    }
    const mark = readMark();
    const n = S.recs.filter((r) => !r.local && r.msg.direction === 'out' && r.msg.conversation_id === S.conv &&
      r.msg.seq > mark && !(r.msg.sender && r.msg.sender.type === 'system')).length;
    badge.textContent = n > 9 ? '9+' : String(n);
    badge.hidden = n === 0;
    launcher.setAttribute('aria-label', (n ? n + ' unread \u2014 ' : '') + 'Open chat');
  }

  // ---- sending ----
  function sendText() {
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    autosize();
    typingOut(false);
    queue({ payload: { text } });
  }
  function queue(r) {
    r.clientId = newID();
    r.local = true;
    r.t = Date.now();
    r.msg = { direction: 'in', created_at: new Date().toISOString(), sender: { type: 'contact' },
      parts: r.payload ? [{ type: 'text', text: r.payload.text }] : [r.preview] };
    S.byClient.set(r.clientId, r);
    renderRec(r);
    place(r);
    scrollDown();
    transmit(r);
    start();
  }
  async function transmit(r) {
    if (!r.local || r.uploading) return;
    r.status = 'sending';
    r.progress = '';
    renderRec(r);
    clearTimeout(r.timer);
    if (!r.payload && r.file) {
      if (!S.token) return; // uploaded once a session exists (flush)
      r.uploading = true;
      r.progress = 'Uploading\u2026';
      renderRec(r);
      const fd = new FormData();
      fd.append('file', r.file, r.file.name || 'file');
      try {
        const res = await req('POST', '/v1/widget/uploads', fd, { Authorization: 'Bearer ' + S.token });
        r.uploading = false;
        r.payload = { text: '', parts: [res.part] };
        r.progress = '';
        if (r.local) renderRec(r);
      } catch (e) {
        r.uploading = false;
        fail(r);
        showError(e.message);
        return;
      }
    }
    // Not acked in time (offline, or the server dropped it): let the visitor retry.
    clearTimeout(r.timer);
    r.timer = setTimeout(() => fail(r), 20000);
    if (r.local && r.status === 'sending' && S.connected) {
      wsSend({ type: 'send', client_id: r.clientId, text: r.payload.text, ...(r.payload.parts ? { parts: r.payload.parts } : {}) });
      S.lastSent = r;
    }
  }
  function fail(r) {
    clearTimeout(r.timer);
    if (!r.local) return;
    r.status = 'failed';
    renderRec(r);
  }
  function flush() {
    for (const r of S.recs) if (r.local && r.status === 'sending') transmit(r);
  }
  function addFiles(files) {
    for (const f of files) {
      const isImg = /^image\//.test(f.type);
      const blob = isImg ? URL.createObjectURL(f) : null;
      queue({ file: f, blob, preview: isImg ? { type: 'image', url: blob, name: f.name } : { type: 'file', name: f.name, size: f.size } });
    }
  }

  // ---- typing ----
  function typingOut(on) {
    clearTimeout(S.typingStop);
    const now = Date.now();
    if (on) {
      if (now - S.typingSentAt > 3000) { S.typingSentAt = now; wsSend({ type: 'typing', typing: true }); }
      S.typingStop = setTimeout(() => typingOut(false), 4000);
    } else if (S.typingSentAt) {
      S.typingSentAt = 0;
      wsSend({ type: 'typing', typing: false });
    }
  }
  function typingIn(on, sender) {
    clearTimeout(S.typingHide);
    typing.hidden = !on;
    if (!on) return;
    typing.textContent = (sender && sender.name ? sender.name : 'Agent') + ' is typing\u2026';
    S.typingHide = setTimeout(() => { typing.hidden = true; }, 6000);
  }

  // ---- session, history, websocket ----
  async function session() {
    const body = { channel_id: channel };
    if (S.token) body.visitor_token = S.token;
    if (opt.userId) body.user = { id: opt.userId, name: opt.userName || '', hash: opt.userHash || '' };
    const res = await req('POST', '/v1/widget/sessions', body);
    if (res.visitor_token !== S.token) {
      if (S.token) resetMessages();
      S.token = res.visitor_token;
      store.set('token', S.token);
    }
    store.set('user', opt.userId || null);
    if (res.conversation_id && !S.conv) S.conv = res.conversation_id;
  }
  async function loadHistory() {
    const res = await req('GET', '/v1/widget/messages?token=' + encodeURIComponent(S.token) + '&after_seq=' + S.lastSeq + '&limit=200');
    if (res.conversation_id && !S.conv) S.conv = res.conversation_id;
    for (const m of res.messages || []) upsert(m);
    S.loaded = true;
    scrollDown();
  }
  function start() {
    if (!S.starting && !S.fatal) S.starting = connect();
    return S.starting;
  }
  async function connect() {
    clearTimeout(S.retryTimer);
    S.retryTimer = 0;
    if (S.fatal || S.busy || S.ws) return;
    S.busy = true;
    try { await prepare(); } finally { S.busy = false; }
    if (S.fatal || S.ws || !S.token || S.retryTimer) return;
    openSocket();
  }
  // prepare makes sure there is a valid visitor token and the history is loaded.
  async function prepare() {
    if (!S.token || S.failedOpens >= 2) {
      try {
        await session();
        S.failedOpens = 0;
      } catch (e) {
        if (e.status >= 400 && e.status < 500 && e.status !== 429) {
          S.fatal = e.message;
          showError(e.message);
          for (const r of S.recs) fail(r);
          setBanner();
          return;
        }
        return retry();
      }
    }
    if (!S.loaded) { try { await loadHistory(); } catch { /* the resume fills in */ } }
    flush(); // uploads waiting for a session
  }
  function openSocket() {
    const ws = new WebSocket(WS_ORIGIN + '/v1/widget/ws?token=' + encodeURIComponent(S.token));
    let opened = false;
    S.ws = ws;
    ws.onopen = () => {
      opened = true;
      S.connected = true;
      S.everOpened = true;
      S.attempt = 0;
      S.failedOpens = 0;
      S.lastFrame = Date.now();
      setBanner();
      wsSend({ type: 'resume', after_seq: S.lastSeq });
      flush();
      clearInterval(S.pingTimer);
      S.pingTimer = setInterval(() => {
        if (Date.now() - S.lastFrame > 60000) return drop(ws);
        wsSend({ type: 'ping' });
      }, 25000);
    };
    ws.onmessage = (e) => {
      S.lastFrame = Date.now();
      let f;
      try { f = JSON.parse(e.data); } catch { return; }
      onFrame(f);
    };
    ws.onclose = () => { if (!opened) S.failedOpens++; drop(ws); };
  }
  function drop(ws) {
    if (S.ws !== ws) return;
    ws.onclose = ws.onmessage = ws.onopen = null;
    try { ws.close(); } catch { /* already closed */ }
    S.ws = null;
    S.connected = false;
    clearInterval(S.pingTimer);
    typingIn(false);
    retry();
  }
  function retry() {
    clearTimeout(S.retryTimer);
    const cap = Math.min(30000, 500 * 2 ** S.attempt);
    S.attempt = Math.min(S.attempt + 1, 16);
    setBanner();
    S.retryTimer = setTimeout(() => { S.retryTimer = 0; connect(); }, cap / 2 + Math.random() * cap / 2);
  }
  function wakeUp() {
    if (S.token && !S.connected && !S.fatal && S.retryTimer) { clearTimeout(S.retryTimer); S.retryTimer = 0; S.attempt = 0; connect(); }
  }
  function wsSend(f) {
    if (S.ws && S.connected) { try { S.ws.send(JSON.stringify(f)); } catch { /* closing */ } }
  }
  function onFrame(f) {
    switch (f.type) {
      case 'message': upsert(f.message); break;
      case 'ack': upsert(f.message, f.client_id); break;
      case 'typing': if (!f.sender || f.sender.type !== 'contact') typingIn(!!f.typing, f.sender); break;
      case 'presence': setOnline(!!f.agents_online); break;
      case 'resumed': if (f.more) wsSend({ type: 'resume', after_seq: S.lastSeq }); break;
      case 'error':
        if (f.code === 'too_long' && S.lastSent) fail(S.lastSent);
        if (f.code !== 'rate_limited' || S.recs.some((r) => r.local)) showError(f.message || 'Something went wrong.');
        break;
    }
  }

  // ---- open / close ----
  function open() {
    S.open = true;
    panel.hidden = false;
    launcher.setAttribute('aria-expanded', 'true');
    root.host.setAttribute('data-open', '');
    if (S.fatal) showError(S.fatal);
    start();
    updateUnread();
    scrollDown();
    if (matchMedia('(min-width: 481px)').matches) input.focus({ preventScroll: true });
  }
  function close() {
    S.open = false;
    panel.hidden = true;
    launcher.setAttribute('aria-expanded', 'false');
    root.host.removeAttribute('data-open');
    typingOut(false);
    launcher.focus({ preventScroll: true });
  }

  function autosize() {
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight, 120) + 'px';
  }
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      sendText();
    }
  });
  input.addEventListener('input', () => { autosize(); typingOut(input.value.trim() !== ''); });
  input.addEventListener('blur', () => typingOut(false));
  input.addEventListener('paste', (e) => {
    const files = [...((e.clipboardData && e.clipboardData.files) || [])];
    if (files.length) { e.preventDefault(); addFiles(files); }
  });
  fileInput.addEventListener('change', () => { addFiles([...fileInput.files]); fileInput.value = ''; });
  panel.addEventListener('dragover', (e) => { if (e.dataTransfer && [...e.dataTransfer.types].includes('Files')) e.preventDefault(); });
  panel.addEventListener('drop', (e) => {
    if (e.dataTransfer && e.dataTransfer.files.length) { e.preventDefault(); addFiles([...e.dataTransfer.files]); }
  });
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') close(); });
  document.addEventListener('visibilitychange', () => { updateUnread(); if (!document.hidden) wakeUp(); });
  window.addEventListener('online', wakeUp);

  window.Switchboard = { open, close, root };

  function mount() {
    document.body.append(host);
    applyLook(null);
    setOnline(true);
    req('GET', '/v1/widget/config?channel_id=' + encodeURIComponent(channel)).then((cfg) => {
      S.config = cfg;
      applyLook(cfg);
      if (!S.connected) setOnline(cfg.agents_online !== false);
    }, () => { /* keep defaults; the socket reports presence */ });
    if (S.token) start(); // a returning visitor: connect now for unread and presence
  }
  if (document.body) mount(); else document.addEventListener('DOMContentLoaded', mount);

  function CSS_TEXT() {
    return `
:host{all:initial;--sb-brand:#2563eb;--sb-on-brand:#fff;--sb-font:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"PingFang SC","Microsoft YaHei",sans-serif}
*{box-sizing:border-box}
[hidden]{display:none!important}
button{font:inherit;cursor:pointer}
.launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:58px;height:58px;border:0;border-radius:50%;background:var(--sb-brand);color:var(--sb-on-brand);display:grid;place-items:center;box-shadow:0 6px 20px rgba(17,24,39,.25);transition:transform .15s}
.launcher:hover{transform:scale(1.05)}
.launcher svg{fill:currentColor}
.badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;background:#dc2626;color:#fff;font:600 12px/20px var(--sb-font);text-align:center;box-shadow:0 0 0 2px #fff}
:focus-visible{outline:2px solid var(--sb-brand);outline-offset:2px}
.launcher:focus-visible{outline-color:#111827}
.panel{position:fixed;right:20px;bottom:92px;z-index:2147483001;width:376px;height:min(620px,calc(100vh - 120px));display:flex;flex-direction:column;background:#fff;color:#111827;border-radius:16px;overflow:hidden;box-shadow:0 12px 48px rgba(17,24,39,.28);font:14px/1.45 var(--sb-font);-webkit-text-size-adjust:100%}
header{display:flex;align-items:center;gap:12px;padding:14px 12px 14px 18px;background:var(--sb-brand);color:var(--sb-on-brand)}
.head{flex:1;min-width:0}
.title{font-weight:600;font-size:16px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.state{font-size:12px;opacity:.9;display:flex;align-items:center;gap:6px}
.state::before{content:"";width:8px;height:8px;border-radius:50%;background:#9ca3af}
.state.on::before{background:#22c55e}
.icon{flex:none;display:grid;place-items:center;width:36px;height:36px;border:0;border-radius:8px;background:transparent;color:inherit}
.icon svg{fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}
.close:hover{background:rgba(255,255,255,.18)}
.banner{padding:8px 16px;font-size:13px;border-bottom:1px solid}
.offline{background:#fffbeb;color:#92400e;border-color:#fde68a}
.reconnecting{background:#eff6ff;color:#1e40af;border-color:#bfdbfe}
.list{flex:1;overflow-y:auto;padding:16px 14px;background:#f6f7f9;display:flex;flex-direction:column;gap:10px;overscroll-behavior:contain;-webkit-overflow-scrolling:touch}
.greeting{align-self:flex-start;max-width:85%;padding:10px 13px;border-radius:14px;background:#fff;border:1px solid #e5e7eb;white-space:pre-wrap}
.msg{display:flex;flex-direction:column;max-width:82%}
.mine{align-self:flex-end;align-items:flex-end}
.theirs{align-self:flex-start;align-items:flex-start}
.sys{align-self:center;align-items:center;max-width:90%}
.bubble{padding:9px 13px;border-radius:16px;overflow-wrap:anywhere;display:flex;flex-direction:column;gap:6px}
.mine .bubble{background:var(--sb-brand);color:var(--sb-on-brand);border-bottom-right-radius:5px}
.theirs .bubble{background:#fff;border:1px solid #e5e7eb;border-bottom-left-radius:5px}
.sys .bubble{background:transparent;color:#6b7280;font-size:12px;padding:2px 8px}
.is-recalled .bubble{background:#f3f4f6;color:#6b7280;border:1px dashed #d1d5db}
.text{margin:0;white-space:pre-wrap}
.text a,.file{color:inherit;text-decoration:underline}
.file{margin:0}
.img img{display:block;max-width:220px;max-height:220px;border-radius:10px;background:#e5e7eb}
.card{display:flex;flex-direction:column;gap:2px;color:inherit;text-decoration:none;padding:8px 10px;border-radius:10px;background:rgba(0,0,0,.05)}
.meta{display:flex;gap:6px;align-items:center;margin-top:3px;font-size:11px;color:#6b7280}
.meta .who{font-weight:600}
.st.ok{color:#059669}
.st.failed{color:#dc2626;font-weight:600}
.retry{border:0;background:none;color:#dc2626;text-decoration:underline;padding:0;font-size:11px}
.typing{padding:4px 16px 6px;font-size:12px;color:#6b7280;font-style:italic;background:#f6f7f9}
.toast{margin:0 12px 8px;padding:9px 12px;border-radius:10px;background:#fef2f2;color:#991b1b;border:1px solid #fecaca;font-size:13px}
.composer{display:flex;align-items:flex-end;gap:6px;padding:10px;border-top:1px solid #e5e7eb;background:#fff}
textarea{flex:1;resize:none;min-height:38px;max-height:120px;padding:8px 12px;border:1px solid #d1d5db;border-radius:19px;font:inherit;font-size:15px;line-height:20px;color:inherit;background:#fff;outline:none}
textarea:focus-visible{outline:none}
textarea:focus{border-color:var(--sb-brand);box-shadow:0 0 0 3px rgba(37,99,235,.15)}
.attach{color:#6b7280}
.attach:hover{background:#f3f4f6}
.send{background:var(--sb-brand);color:var(--sb-on-brand);border-radius:50%;width:38px;height:38px}
.send svg{fill:currentColor;stroke:none}
@media (max-width:480px){
.panel{inset:0;width:100%;height:100%;height:100dvh;border-radius:0;bottom:0;right:0;padding-bottom:env(safe-area-inset-bottom)}
:host([data-open]) .launcher{display:none}
textarea{font-size:16px}
}
@media (prefers-reduced-motion:reduce){.launcher{transition:none}}
`;
  }
})();
