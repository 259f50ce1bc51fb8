// Switchboard agent console: login, the conversation list, one open
// conversation, and the agent websocket of docs/api.md (cursor kept per
// agent in localStorage, resume on every connect, reset reloads). Data is
// only ever rendered as text; a mail's HTML body is shown only inside a
// sandboxed frame (no scripts, opaque origin) that the server serves under
// its own Content-Security-Policy.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const SESSION = 'switchboard.console.session';
  const TENANT = 'switchboard.console.tenant';
  const ls = {
    get(k) { try { return localStorage.getItem(k); } catch { return null; } },
    set(k, v) { try { if (v == null) localStorage.removeItem(k); else localStorage.setItem(k, v); } catch { /* storage blocked */ } },
  };

  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'testid') el.setAttribute('data-testid', v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of kids.flat()) if (c != null && c !== false) el.append(c);
    return el;
  }
  function safeURL(u) {
    try {
      const url = new URL(u, location.href);
      return ['http:', 'https:', 'blob:'].includes(url.protocol) ? url.href : null;
    } catch { return null; }
  }
  function linkify(text) {
    const out = [];
    const re = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
    let last = 0, m;
    while ((m = re.exec(text))) {
      const href = safeURL(m[0]);
      out.push(text.slice(last, m.index), href ? h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, m[0]) : m[0]);
      last = m.index + m[0].length;
    }
    out.push(text.slice(last));
    return out;
  }
  function fmtTime(s) {
    const t = new Date(s);
    if (!s || isNaN(t)) return '';
    const today = t.toDateString() === new Date().toDateString();
    return t.toLocaleString([], today ? { hour: '2-digit', minute: '2-digit' } : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }
  function fullTime(s) {
    const t = new Date(s);
    return !s || isNaN(t) ? '' : t.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  }
  function fmtSize(n) {
    if (!(n > 0)) return '';
    return n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KB' : (n / 1048576).toFixed(1) + ' MB';
  }
  const newID = () => (crypto.randomUUID ? crypto.randomUUID() : 'c-' + Date.now().toString(36) + Math.random().toString(36).slice(2));
  const ts = (s) => Date.parse(s) || 0;
  const KINDS = { webchat: 'Web', wechat_oa: 'WeChat', wechat_mp: 'Mini Program', email: 'Email', voice: 'Voice', test: 'Test' };

  let toastTimer = 0;
  function toast(msg) {
    const t = $('toast');
    t.textContent = msg;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
  }

  // ---- state ----
  const S = {
    token: null, agent: null, agents: [],
    tab: 'mine', convs: new Map(), listIds: new Set(), listMore: false, listLoading: false, listGen: 0,
    openId: null, openGen: 0, recs: [], byID: new Map(), byClient: new Map(), hasOlder: false, loadingOlder: false,
    ws: null, connected: false, attempt: 0, retryTimer: 0, pingTimer: 0, lastFrame: 0, cursor: null, hadStoredCursor: false, everConnected: false, reloadAfter: false, catchUpAfter: false,
    hiddenNew: 0, skew: 0, typingSentAt: 0, typingStop: 0, typingHide: 0, readTimer: 0, audio: null,
    mail: null,
  };
  // mail is the email composer's state for the open conversation: which
  // header fields the agent edited (they are no longer prefilled), the
  // attachments uploaded for the next mail, uploads in flight.
  const newMail = () => ({ dirty: {}, staged: [], uploading: 0 });
  S.mail = newMail();
  const me = () => (S.agent && S.agent.id) || '';
  const cursorKey = () => 'switchboard.console.cursor.' + me();
  const saveCursor = (n) => { S.cursor = n; ls.set(cursorKey(), String(n)); };

  const apiError = (status, code, message) => Object.assign(new Error(message), { status, code });
  async function api(method, path, body, auth = true) {
    const headers = {};
    if (auth) headers.Authorization = 'Bearer ' + S.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw apiError(0, 'network', 'Network error — is the server reachable?');
    }
    let data = null;
    try { data = await res.json(); } catch { /* 204 or not JSON */ }
    if (!res.ok) {
      const e = (data && data.error) || {};
      if (res.status === 401 && auth) signedOut('Your session has ended. Please sign in again.');
      throw apiError(res.status, e.code || 'http_' + res.status, e.message || 'Request failed (' + res.status + ').');
    }
    return data;
  }
  const fail = (e) => { if (e.status !== 401) toast(e.message); };

  // ---- login / logout ----
  async function login(ev) {
    ev.preventDefault();
    const err = $('login-error');
    const body = { tenant: $('login-tenant').value.trim(), email: $('login-email').value.trim(), password: $('login-password').value };
    $('login-submit').disabled = true;
    try {
      const res = await api('POST', '/v1/auth/login', body, false);
      ls.set(TENANT, body.tenant);
      ls.set(SESSION, JSON.stringify({ token: res.token, agent: res.agent, expires_at: res.expires_at }));
      err.hidden = true;
      $('login-password').value = '';
      startApp(res.token, res.agent);
    } catch (e) {
      err.textContent = e.status === 401 ? 'Wrong workspace, email or password.' : e.message;
      err.hidden = false;
    } finally {
      $('login-submit').disabled = false;
    }
  }
  function showLogin(msg) {
    $('app').hidden = true;
    $('login').hidden = false;
    $('login-tenant').value = ls.get(TENANT) || '';
    const err = $('login-error');
    err.textContent = msg || '';
    err.hidden = !msg;
    ($('login-tenant').value ? $('login-email') : $('login-tenant')).focus();
    document.title = 'Switchboard';
  }
  function signedOut(msg) {
    if (!S.token) return;
    S.token = null;
    ls.set(SESSION, null);
    stopSocket();
    closeConv();
    S.convs.clear();
    S.listIds.clear();
    showLogin(msg);
  }
  async function logout() {
    try { await api('POST', '/v1/auth/logout'); } catch { /* signing out anyway */ }
    signedOut('');
  }

  async function startApp(token, agent) {
    S.token = token;
    S.agent = agent || {};
    $('login').hidden = true;
    $('app').hidden = false;
    renderAgent();
    const stored = ls.get(cursorKey());
    S.cursor = stored == null ? null : Number(stored);
    S.hadStoredCursor = stored != null;
    connect();
    loadList();
    loadAgents();
    api('GET', '/v1/auth/me').then((r) => { if (r && r.agent) { S.agent = r.agent; renderAgent(); } }, fail);
    const id = decodeURIComponent(location.hash.slice(1));
    if (/^\d+$/.test(id)) openConv(id);
  }
  function renderAgent() {
    $('agent-name').textContent = S.agent.name || S.agent.email || '';
    setPresence(S.agent.status === 'away' ? 'away' : 'online');
  }
  function setPresence(st) {
    const b = $('presence');
    b.dataset.status = st;
    b.textContent = st === 'away' ? 'Away' : 'Online';
    b.setAttribute('aria-pressed', String(st === 'online'));
  }
  async function togglePresence() {
    const next = $('presence').dataset.status === 'online' ? 'away' : 'online';
    try {
      const r = await api('POST', '/v1/agent/status', { status: next });
      setPresence(r && r.status === 'away' ? 'away' : r && r.status === 'online' ? 'online' : next);
    } catch (e) { fail(e); }
  }
  async function loadAgents() {
    try {
      const r = await api('GET', '/v1/agents');
      S.agents = (r && r.agents) || [];
      renderHead();
    } catch (e) { fail(e); }
  }

  // ---- conversation list ----
  const TABS = {
    mine: { q: 'status=open&assignee=me', has: (c) => c.status !== 'resolved' && !!c.assignee_id && c.assignee_id === me() },
    unassigned: { q: 'status=open&assignee=unassigned', has: (c) => c.status !== 'resolved' && !c.assignee_id },
    resolved: { q: 'status=resolved', has: (c) => c.status === 'resolved' },
  };
  const activity = (c) => Math.max(ts(c.updated_at), ts(c.last_message && c.last_message.created_at));

  // mergeConv stores a conversation from the server, keeping read state the
  // event did not carry and never letting an older snapshot (a resumed
  // backlog) undo a newer one.
  function mergeConv(nc) {
    if (!nc || !nc.id) return null;
    const old = S.convs.get(nc.id);
    let c = { ...nc };
    if (old) {
      if (ts(nc.updated_at) < ts(old.updated_at)) c = { ...old };
      for (const k of ['read_seq', 'unread', 'last_message', 'subject']) if (c[k] === undefined && old[k] !== undefined) c[k] = old[k];
      if ((old.last_seq || 0) > (c.last_seq || 0)) { c.last_seq = old.last_seq; c.last_message = old.last_message; }
    }
    S.convs.set(c.id, c);
    if (TABS[S.tab].has(c)) S.listIds.add(c.id); else S.listIds.delete(c.id);
    return c;
  }
  async function loadList(more) {
    const gen = more ? S.listGen : ++S.listGen;
    if (more && (S.listLoading || !S.listMore)) return;
    S.listLoading = true;
    let q = '/v1/conversations?' + TABS[S.tab].q + '&limit=50';
    if (more) {
      const ids = sortedList();
      if (ids.length) q += '&before=' + encodeURIComponent(ids[ids.length - 1]);
    }
    try {
      const r = await api('GET', q);
      if (gen !== S.listGen) return;
      const list = (r && r.conversations) || [];
      if (!more) S.listIds.clear();
      for (const c of list) { mergeConv(c); S.listIds.add(c.id); }
      S.listMore = list.length === 50;
      renderList();
    } catch (e) { fail(e); } finally { if (gen === S.listGen) S.listLoading = false; }
  }
  function sortedList() {
    return [...S.listIds].filter((id) => S.convs.has(id)).sort((a, b) => activity(S.convs.get(b)) - activity(S.convs.get(a)));
  }
  function preview(m) {
    if (!m) return '';
    if (m.recalled_at) return 'message recalled';
    const parts = m.parts || [];
    const p = (parts[0] && parts[0].type === 'email' ? parts[1] : parts[0]) || {};
    const mine = m.direction === 'out' && m.sender && m.sender.id === me() ? 'You: ' : '';
    const body = p.type === 'text' ? p.text : p.type === 'image' ? '\u{1F4F7} Photo' : p.type === 'file' ? '\u{1F4CE} ' + (p.name || 'File')
      : p.type === 'location' ? '\u{1F4CD} ' + (p.label || 'Location') : p.type === 'card' ? p.title || 'Card' : p.type ? '[' + p.type + ']' : '';
    return mine + (body || '');
  }
  function renderList() {
    const ul = $('conv-list');
    const ids = sortedList();
    const rows = ids.map((id) => {
      const c = S.convs.get(id);
      const unread = c.unread > 0 ? c.unread : 0;
      // Email: the thread's subject heads the preview (the newest mail's,
      // kept when a later message carries none).
      const mail = emailOf(c.last_message);
      if (mail && mail.subject) c.subject = mail.subject;
      return h('li', null, h('button', {
        class: 'conv-row' + (unread ? ' has-unread' : ''), type: 'button', testid: 'conv-row', 'data-id': c.id,
        'aria-current': String(c.id === S.openId), onclick: () => openConv(c.id),
      },
      h('span', { class: 'r1' },
        h('span', { class: 'name' }, c.contact_name || 'Visitor'),
        h('span', { class: 'kind kind-' + (c.channel_kind || 'other'), testid: 'conv-channel', title: c.channel_name || '' }, KINDS[c.channel_kind] || c.channel_kind || '?'),
        h('time', { datetime: c.updated_at || '' }, fmtTime((c.last_message && c.last_message.created_at) || c.updated_at))),
      c.subject ? h('span', { class: 'r-subject', testid: 'conv-subject' }, c.subject) : null,
      h('span', { class: 'r2' },
        h('span', { class: 'preview' }, preview(c.last_message)),
        unread ? h('span', { class: 'unread', testid: 'conv-unread', 'aria-label': unread + ' unread' }, unread > 99 ? '99+' : String(unread)) : null)));
    });
    if (!rows.length && !S.listLoading) rows.push(h('li', { class: 'none' }, 'No conversations here.'));
    ul.replaceChildren(...rows);
  }
  function setTab(tab) {
    if (!TABS[tab]) return;
    S.tab = tab;
    for (const b of document.querySelectorAll('[data-tab]')) b.setAttribute('aria-selected', String(b.dataset.tab === tab));
    S.listIds.clear();
    for (const c of S.convs.values()) if (TABS[tab].has(c)) S.listIds.add(c.id);
    renderList();
    loadList();
  }

  // ---- the open conversation ----
  function closeConv() {
    S.openId = null;
    S.recs = [];
    S.byID.clear();
    S.byClient.clear();
    $('history').replaceChildren();
    S.mail = newMail();
    for (const id of ['email-to', 'email-cc', 'email-subject']) $(id).value = '';
    renderStaged();
    for (const id of ['conv-head', 'history', 'composer-form', 'typing', 'email-fields']) $(id).hidden = true;
    $('empty').hidden = false;
  }
  async function openConv(id) {
    closeConv();
    const gen = ++S.openGen;
    S.openId = id;
    history.replaceState(null, '', '#' + id);
    $('empty').hidden = true;
    for (const x of ['conv-head', 'history', 'composer-form']) $(x).hidden = false;
    renderHead();
    renderList();
    try {
      const c = mergeConv(await api('GET', '/v1/conversations/' + id));
      if (gen !== S.openGen) return;
      renderHead();
      const r = await api('GET', '/v1/conversations/' + id + '/messages?before_seq=' + ((c.last_seq || 0) + 1) + '&limit=50');
      if (gen !== S.openGen) return;
      const list = (r && r.messages) || [];
      for (const m of list) upsertMsg(m);
      S.hasOlder = list.length === 50 && list[0].seq > 1;
      renderComposer();
      scrollDown();
      markReadSoon();
      if (matchMedia('(pointer: fine)').matches) $('composer').focus();
    } catch (e) {
      if (gen !== S.openGen) return;
      fail(e);
      if (e.status === 404) { closeConv(); history.replaceState(null, '', '#'); }
    }
  }
  async function loadOlder() {
    if (!S.openId || !S.hasOlder || S.loadingOlder) return;
    const first = S.recs.find((r) => !r.local);
    if (!first) return;
    S.loadingOlder = true;
    const gen = S.openGen;
    const hist = $('history');
    try {
      const r = await api('GET', '/v1/conversations/' + S.openId + '/messages?before_seq=' + first.msg.seq + '&limit=50');
      if (gen !== S.openGen) return;
      const list = (r && r.messages) || [];
      const before = hist.scrollHeight;
      for (const m of list) upsertMsg(m);
      hist.scrollTop += hist.scrollHeight - before;
      S.hasOlder = list.length === 50 && list[0].seq > 1;
    } catch (e) { fail(e); } finally { S.loadingOlder = false; }
  }
  // catchUp fetches what the open conversation got while the socket was away.
  async function catchUp() {
    const id = S.openId, gen = S.openGen;
    if (!id) return;
    try {
      for (;;) {
        const last = S.recs.reduce((n, r) => (r.local ? n : Math.max(n, r.msg.seq || 0)), 0);
        const r = await api('GET', '/v1/conversations/' + id + '/messages?after_seq=' + last + '&limit=200');
        if (gen !== S.openGen) return;
        const list = (r && r.messages) || [];
        for (const m of list) upsertMsg(m);
        if (list.length < 200) break;
      }
      mergeConv(await api('GET', '/v1/conversations/' + id));
      if (gen === S.openGen) { renderHead(); markReadSoon(); }
    } catch (e) { fail(e); }
  }
  function renderHead() {
    const c = S.convs.get(S.openId);
    if (!c) return;
    $('c-contact').textContent = c.contact_name || 'Visitor';
    const kind = $('c-channel');
    kind.textContent = (KINDS[c.channel_kind] || c.channel_kind || '') + (c.channel_name ? ' \u00b7 ' + c.channel_name : '');
    kind.className = 'kind kind-' + (c.channel_kind || 'other');
    const st = $('c-status');
    st.textContent = c.status === 'resolved' ? 'Resolved' : 'Open';
    st.className = 'chip ' + (c.status || '');
    renderDeadline(c);
    const sel = $('assign');
    const opts = [h('option', { value: '' }, 'Unassigned')];
    for (const a of S.agents) {
      const extra = [a.status, a.capacity ? (a.open || 0) + '/' + a.capacity : ''].filter(Boolean).join(', ');
      opts.push(h('option', { value: a.id }, (a.id === me() ? 'Me (' + (a.name || '') + ')' : a.name || a.email || a.id) + (extra ? ' \u2014 ' + extra : '')));
    }
    if (c.assignee_id && !S.agents.some((a) => a.id === c.assignee_id)) opts.push(h('option', { value: c.assignee_id }, 'Agent ' + c.assignee_id));
    sel.replaceChildren(...opts);
    sel.value = c.assignee_id || '';
    const res = $('resolve');
    res.disabled = c.status === 'resolved';
    res.textContent = c.status === 'resolved' ? 'Resolved' : 'Resolve';
  }
  async function assign() {
    const id = S.openId, agentID = $('assign').value;
    try {
      mergeConv(await api('POST', '/v1/conversations/' + id + '/assign', { agent_id: agentID }));
    } catch (e) { fail(e); }
    renderHead();
    renderList();
  }
  async function resolve() {
    const id = S.openId;
    $('resolve').disabled = true;
    try { mergeConv(await api('POST', '/v1/conversations/' + id + '/resolve')); } catch (e) { fail(e); }
    renderHead();
    renderList();
  }

  // ---- messages ----
  function renderParts(m) {
    if (m.recalled_at) return [h('em', { testid: 'recalled' }, 'message recalled')];
    return renderPartList(m.parts || []);
  }
  function renderPartList(parts) {
    return parts.map((p) => {
      const url = p.url && safeURL(p.url);
      switch (p.type) {
        case 'email': return null; // the header block, see renderEmail
        case 'text': return h('p', { class: 'text' }, linkify(p.text || ''));
        case 'image':
          return url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', 'aria-label': 'Open image' }, h('img', { src: url, alt: p.name || 'image', loading: 'lazy' }))
            : h('p', { class: 'text' }, '\u{1F4F7} ' + (p.name || 'image'));
        case 'audio': case 'video':
          return url ? h(p.type, { src: url, controls: true, preload: 'none' }) : h('p', { class: 'text' }, '[' + p.type + ']');
        case 'location':
          return h('p', { class: 'text' }, '\u{1F4CD} ' + [p.label, p.lat != null ? p.lat + ', ' + p.lng : ''].filter(Boolean).join(' \u2014 '));
        case 'card': {
          const kids = [h('strong', null, p.title || ''), p.description ? h('span', null, p.description) : null];
          const href = p.url && safeURL(p.url);
          return href ? h('a', { class: 'card', href, target: '_blank', rel: 'noopener noreferrer' }, kids) : h('div', { class: 'card' }, kids);
        }
        case 'call': return h('p', { class: 'text' }, '\u{1F4DE} Call ' + (p.event || ''));
        default: {
          const label = '\u{1F4CE} ' + (p.name || 'file') + (p.size ? ' \u00b7 ' + fmtSize(p.size) : '');
          return url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', download: p.name || true }, label) : h('p', { class: 'text' }, label);
        }
      }
    });
  }
  const STATUS = { sending: 'Sending\u2026', pending: 'Sending\u2026', sent: 'Sent \u2713', delivered: 'Delivered \u2713\u2713', read: 'Read \u2713\u2713', failed: 'Failed' };
  const RECALL_MS = 120000;
  function canRecall(r) {
    const m = r.msg;
    // A sent mail cannot be taken back from the customer's mailbox.
    return !r.local && m.id && m.direction === 'out' && !m.recalled_at && !emailOf(m) && m.sender && m.sender.type === 'agent' &&
      m.sender.id === me() && Date.now() - S.skew - ts(m.created_at) < RECALL_MS;
  }
  function renderRec(r) {
    const m = r.msg;
    const status = r.local ? r.status : m.status || (m.direction === 'in' ? 'received' : 'sent');
    const sys = m.sender && m.sender.type === 'system';
    const meta = h('div', { class: 'meta' });
    const who = m.sender && (m.sender.id === me() && m.sender.type === 'agent' ? 'You' : m.sender.name);
    if (who && !sys) meta.append(h('span', { class: 'sender' }, who));
    meta.append(h('time', { datetime: m.created_at || '' }, fmtTime(m.created_at)));
    if (m.direction === 'out' && !sys) {
      meta.append(h('span', { class: 'st-' + status, testid: 'msg-status' },
        status === 'pending' && m.status_reason ? 'Retrying \u2014 ' + m.status_reason.replace(/^retrying: /, '')
          : (STATUS[status] || status) + (status === 'failed' && (r.error || m.status_reason) ? ': ' + (r.error || m.status_reason) : '')));
      if (r.local && status === 'failed') meta.append(h('button', { class: 'link', type: 'button', testid: 'retry', onclick: () => post(r) }, 'Retry'));
      if (canRecall(r)) meta.append(h('button', { class: 'link danger', type: 'button', testid: 'recall', 'aria-label': 'Recall this message', onclick: () => recall(r) }, 'Recall'));
    }
    const mail = !m.recalled_at && emailOf(m);
    const el = h('div', {
      class: ['msg', sys ? 'sys' : m.direction === 'in' ? 'in' : 'out', mail ? 'email' : '', m.sender && m.sender.type === 'bot' ? 'bot' : '', m.recalled_at ? 'recalled' : '', status === 'failed' ? 'failed' : ''].join(' ').trim(),
      testid: 'msg', 'data-direction': m.direction || 'out', 'data-status': status, 'data-seq': m.seq || null, 'data-id': m.id || null,
    }, h('div', { class: 'bubble' }, mail ? renderEmail(r, m, mail) : renderParts(m)), meta);
    if (r.el) r.el.replaceWith(el);
    r.el = el;
  }
  // WeChat accepts REPLY_QUOTA replies per customer message within its
  // 48-hour window; the server refuses more, the header says what is left.
  const REPLY_QUOTA = { wechat_oa: 5, wechat_mp: 5 };
  function repliesLeft(c) {
    const quota = REPLY_QUOTA[c.channel_kind];
    if (!quota) return null;
    let used = 0;
    for (let i = S.recs.length - 1; i >= 0; i--) {
      const m = S.recs[i].msg;
      if (!m) continue;
      if (m.direction === 'in' && m.sender && m.sender.type === 'contact') break;
      if (m.direction === 'out' && m.status !== 'failed') used += Math.max(1, (m.parts || []).length);
    }
    return Math.max(0, quota - used);
  }
  function renderDeadline(c) {
    const dl = $('c-deadline');
    const d = ts(c.reply_deadline);
    const closed = d && d < Date.now();
    const left = closed ? null : repliesLeft(c);
    let text = d ? (closed ? 'Reply window closed' : 'Reply window closes ' + fmtTime(c.reply_deadline)) : '';
    if (left !== null) text += (text ? ' \u00b7 ' : '') + (left ? left + ' of ' + REPLY_QUOTA[c.channel_kind] + ' replies left' : 'No replies left until the customer writes');
    dl.textContent = text;
    dl.className = 'deadline' + (closed || left === 0 ? ' closed' : '');
  }
  function place(r) {
    let i = S.recs.indexOf(r);
    if (i >= 0) S.recs.splice(i, 1);
    const key = (x) => (x.local ? Infinity : x.msg.seq || 0);
    i = S.recs.length;
    while (i > 0 && key(r) < key(S.recs[i - 1])) i--;
    S.recs.splice(i, 0, r);
    const next = S.recs[i + 1];
    if (next) $('history').insertBefore(r.el, next.el); else $('history').append(r.el);
    const c = S.convs.get(S.openId);
    if (c && REPLY_QUOTA[c.channel_kind]) renderDeadline(c);
  }
  const nearBottom = () => { const x = $('history'); return x.scrollHeight - x.scrollTop - x.clientHeight < 120; };
  const scrollDown = () => { const x = $('history'); x.scrollTop = x.scrollHeight; };
  const STATUS_RANK = { pending: 0, received: 0, sent: 1, delivered: 2, read: 3, failed: 4 };
  function upsertMsg(m, clientID) {
    if (!m || !m.id || m.conversation_id !== S.openId) return;
    const cid = clientID || m.client_id;
    let r = S.byID.get(m.id) || (cid && S.byClient.get(cid));
    const stick = nearBottom();
    if (!r) r = {};
    // Answers race: the delivery update can arrive before the POST that
    // created the message returns; never move a status backwards.
    if (r.msg && r.msg.id === m.id && (STATUS_RANK[r.msg.status] || 0) > (STATUS_RANK[m.status] || 0)) {
      m = { ...m, status: r.msg.status, status_reason: r.msg.status_reason };
    }
    Object.assign(r, { msg: m, local: false, error: '' });
    S.byID.set(m.id, r);
    if (cid) S.byClient.set(cid, r);
    renderRec(r);
    place(r);
    if (stick) scrollDown();
    if (m.direction === 'in') showTyping(false);
    if (emailOf(m)) renderComposer();
  }

  // ---- email ----
  // An email message's first part is {type: 'email', email: {subject, from,
  // to, cc, html, raw, quoted, auto, error, …}}; then its text, then its
  // attachments (inline images have media_id 'cid:<content-id>').
  const emailOf = (m) => { const p = ((m && m.parts) || [])[0]; return p && p.type === 'email' && p.email ? p.email : null; };
  const addrOf = (s) => { const x = /<([^<>]*)>\s*$/.exec(s || ''); return (x ? x[1] : s || '').trim().toLowerCase(); };
  // splitAddrs splits "A <a@x>, "Doe, J" <j@x>; b@x" on the commas and
  // semicolons outside quotes and angle brackets.
  function splitAddrs(s) {
    const out = [];
    let cur = '', quoted = false, angled = false;
    for (const ch of s || '') {
      if (ch === '"' && !angled) quoted = !quoted;
      else if (ch === '<' && !quoted) angled = true;
      else if (ch === '>' && !quoted) angled = false;
      else if ((ch === ',' || ch === ';') && !quoted && !angled) { if (cur.trim()) out.push(cur.trim()); cur = ''; continue; }
      cur += ch;
    }
    if (cur.trim()) out.push(cur.trim());
    return out;
  }
  // reSubject answers a subject once: "Re: x" stays "Re: x".
  const reSubject = (s) => { s = (s || '').trim(); return !s || /^(re|aw|sv|antw)\s*:|^(回复|答复)\s*[:：]/i.test(s) ? s : 'Re: ' + s; };
  // mediaURL accepts only this server's media (what the frame may show).
  function mediaURL(u) {
    try {
      const url = new URL(u, location.href);
      return url.origin === location.origin && url.pathname.startsWith('/v1/media/') ? url : null;
    } catch { return null; }
  }
  function isEmailConv() {
    const c = S.convs.get(S.openId);
    return !!c && (c.channel_kind === 'email' || S.recs.some((r) => emailOf(r.msg)));
  }
  function renderEmail(r, m, e) {
    const ui = r.ui || (r.ui = {});
    const rest = (m.parts || []).slice(1);
    const field = (label, value, testid) => (value ? h('div', { class: 'eh-row' }, h('span', { class: 'eh-k' }, label), h('span', { class: 'eh-v', testid }, value)) : null);
    const raw = e.raw && mediaURL(e.raw);
    const out = [h('div', { class: 'email-head', testid: 'email-head' },
      h('div', { class: 'eh-top' },
        h('strong', { class: 'eh-subject', testid: 'email-subject' }, e.subject || '(no subject)'),
        e.auto ? h('span', { class: 'eh-auto', testid: 'email-auto', title: 'Automatic mail: it expects no answer and is never answered automatically' }, 'Automatic \u00b7 ' + e.auto) : null),
      field('From', e.from, 'email-from'),
      field('Reply-To', (e.reply_to || []).join(', '), 'email-reply-to'),
      field('To', (e.to || []).join(', '), 'email-to'),
      field('Cc', (e.cc || []).join(', '), 'email-cc'),
      field('Date', fullTime(m.created_at), 'email-date'),
      raw && !e.error ? h('a', { class: 'link', href: raw.href, download: 'original.eml', testid: 'email-raw' }, 'Download original (.eml)') : null)];
    if (e.error) {
      out.push(h('p', { class: 'eh-error', testid: 'email-error' }, '\u26a0 This mail could not be read: ' + e.error,
        raw ? [' \u00b7 ', h('a', { href: raw.href, download: 'original.eml', testid: 'email-raw' }, 'Download the original')] : null));
    }
    out.push(...renderPartList(rest.filter((p) => p.type === 'text')));
    if (e.quoted) {
      const pre = h('pre', { class: 'quoted', testid: 'email-quoted', hidden: !ui.quoted }, e.quoted);
      const btn = h('button', { class: 'link', type: 'button', testid: 'email-quoted-toggle' });
      const draw = () => {
        btn.textContent = ui.quoted ? 'Hide quoted text' : 'Show quoted text';
        btn.setAttribute('aria-expanded', String(!!ui.quoted));
        pre.hidden = !ui.quoted;
      };
      btn.addEventListener('click', () => { ui.quoted = !ui.quoted; draw(); });
      draw();
      out.push(btn, pre);
    }
    const html = e.html && mediaURL(e.html);
    if (html) out.push(renderMailHTML(ui, m, html));
    const files = rest.filter((p) => p.type !== 'text');
    if (files.length) out.push(h('div', { class: 'attachments', testid: 'email-attachments' }, renderPartList(files)));
    return out;
  }
  // renderMailHTML shows the mail's HTML body on request ("View original
  // formatting"; the text is the default view) in a frame sandboxed without
  // allow-scripts and allow-same-origin: nothing in it runs, and it cannot
  // reach this page, its storage or the API. The server serves the body
  // with a CSP that also forbids scripts and allows images only from its
  // media until remote=1 (the agent's "Show remote images"); cid= pairs
  // tell it which media URL each inline image (cid:) is.
  function renderMailHTML(ui, m, html) {
    const box = h('div', { class: 'email-html' });
    const toggle = h('button', { class: 'link', type: 'button', testid: 'email-html-toggle' });
    const draw = () => {
      toggle.textContent = ui.html ? 'Hide original formatting' : 'View original formatting';
      toggle.setAttribute('aria-expanded', String(!!ui.html));
      if (!ui.html) { box.replaceChildren(); return; }
      const u = new URL(html.href);
      for (const p of m.parts || []) {
        const id = p.media_id && /^cid:/i.test(p.media_id) ? p.media_id.slice(4) : '';
        const src = id && p.url && mediaURL(p.url);
        if (src) u.searchParams.append('cid', id + ' ' + src.pathname + src.search);
      }
      if (ui.remote) u.searchParams.set('remote', '1');
      const frame = h('iframe', { class: 'email-frame', testid: 'email-frame', sandbox: 'allow-popups allow-popups-to-escape-sandbox',
        referrerpolicy: 'no-referrer', title: 'The mail as its sender formatted it', src: u.href });
      frame.addEventListener('load', () => frame.setAttribute('data-loaded', '1'));
      let remote;
      if (ui.remote) remote = h('span', { class: 'eh-note', testid: 'email-remote-on' }, 'Remote images are shown.');
      else {
        remote = h('button', { class: 'link', type: 'button', testid: 'email-remote', title: 'Remote images can tell the sender that and when the mail was read' }, 'Show remote images');
        remote.addEventListener('click', () => { ui.remote = true; draw(); });
      }
      box.replaceChildren(h('div', { class: 'email-frame-bar' }, remote), frame);
    };
    toggle.addEventListener('click', () => { ui.html = !ui.html; draw(); });
    draw();
    return h('div', { class: 'email-html-wrap' }, toggle, box);
  }
  // emailDefaults is what a reply goes to: the newest inbound mail (not an
  // automatic or unreadable one, if there is another) gives To (its
  // sender), Cc (everyone else it went to) and "Re: <subject>". Our own
  // address is left out of Cc as far as the console knows it: the From of
  // the newest sent mail that records one. Without inbound mail, the newest
  // sent mail's recipients and subject.
  function emailDefaults() {
    let human = null, any = null, sent = null, ours = '';
    for (let i = S.recs.length - 1; i >= 0; i--) {
      const m = S.recs[i].msg, e = emailOf(m);
      if (!e) continue;
      if (m.direction === 'in') {
        if (!any) any = e;
        if (!human && !e.auto && !e.error) human = e;
      } else {
        if (!sent) sent = e;
        if (!ours && e.from) ours = addrOf(e.from);
      }
    }
    const src = human || any;
    if (!src) return sent ? { to: sent.to || [], cc: sent.cc || [], subject: sent.subject || '' } : null;
    const to = src.reply_to && src.reply_to.length ? src.reply_to : (src.from ? [src.from] : []);
    const seen = new Set([ours, addrOf(src.from), ...to.map(addrOf)].filter(Boolean));
    const cc = [];
    for (const a of [...(src.to || []), ...(src.cc || [])]) {
      const k = addrOf(a);
      if (!k || seen.has(k)) continue;
      seen.add(k);
      cc.push(a);
    }
    return { to, cc, subject: reSubject(src.subject) };
  }
  // renderComposer shows To, Cc and Subject on an email conversation,
  // prefilling each field the agent has not edited. Sending keeps them.
  function renderComposer() {
    const on = isEmailConv();
    $('email-fields').hidden = !on;
    $('composer').placeholder = on ? 'Write your reply\u2026 (Ctrl+Enter to send)' : 'Reply\u2026 (Enter to send, Shift+Enter for a new line)';
    const d = on && emailDefaults();
    if (!d) return;
    const set = (id, v) => { if (!S.mail.dirty[id]) $(id).value = v; };
    set('email-to', d.to.join(', '));
    set('email-cc', d.cc.join(', '));
    set('email-subject', d.subject);
  }
  function sendMail(text) {
    if (S.mail.uploading) { toast('Wait until the attachments finish uploading.'); return; }
    const files = S.mail.staged.slice();
    if (!text && !files.length) return;
    const email = { subject: $('email-subject').value.trim(), to: splitAddrs($('email-to').value), cc: splitAddrs($('email-cc').value) };
    const parts = [{ type: 'email', email }];
    if (text) parts.push({ type: 'text', text });
    parts.push(...files);
    $('composer').value = '';
    S.mail.staged = [];
    renderStaged();
    typingOut(false);
    const r = { local: true, mail: true, clientId: newID(), conv: S.openId, text, parts,
      msg: { direction: 'out', conversation_id: S.openId, sender: { type: 'agent', id: me(), name: S.agent.name }, parts, created_at: new Date().toISOString() } };
    S.byClient.set(r.clientId, r);
    renderRec(r);
    place(r);
    scrollDown();
    post(r);
  }
  // restoreMail puts a mail the server refused (a bad address, say) back
  // into the composer to be fixed, if the composer is still empty.
  function restoreMail(r) {
    if ($('composer').value.trim() || S.mail.staged.length) return false;
    const i = S.recs.indexOf(r);
    if (i >= 0) S.recs.splice(i, 1);
    S.byClient.delete(r.clientId);
    if (r.el) r.el.remove();
    $('composer').value = r.text || '';
    S.mail.staged = r.parts.filter((p) => p.type === 'image' || p.type === 'file');
    renderStaged();
    return true;
  }
  async function uploadFile(file) {
    const form = new FormData();
    form.append('file', file);
    let res;
    try {
      res = await fetch('/v1/uploads', { method: 'POST', headers: { Authorization: 'Bearer ' + S.token }, body: form });
    } catch {
      throw apiError(0, 'network', 'Network error \u2014 is the server reachable?');
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw apiError(res.status, body.error && body.error.code, (body.error && body.error.message) || 'upload failed');
    return body.part;
  }
  // stageFile uploads an attachment for the next mail.
  async function stageFile(file) {
    const gen = S.openGen, mail = S.mail;
    mail.uploading++;
    renderStaged();
    try {
      const part = await uploadFile(file);
      if (part && gen === S.openGen) mail.staged.push(part);
    } catch (e) { fail(e); } finally {
      mail.uploading--;
      if (gen === S.openGen) renderStaged();
    }
  }
  function renderStaged() {
    const chips = S.mail.staged.map((p, i) => h('span', { class: 'chip-file', testid: 'staged-file' },
      '\u{1F4CE} ' + (p.name || 'file') + (p.size ? ' \u00b7 ' + fmtSize(p.size) : ''),
      h('button', { class: 'link', type: 'button', 'aria-label': 'Remove ' + (p.name || 'file'), onclick: () => { S.mail.staged.splice(i, 1); renderStaged(); } }, '\u00d7')));
    if (S.mail.uploading) chips.push(h('span', { class: 'chip-file' }, 'Uploading\u2026'));
    $('staged').replaceChildren(...chips);
    $('staged').hidden = !chips.length;
  }

  // ---- composing ----
  function sendText() {
    const box = $('composer');
    const text = box.value.trim();
    if (!S.openId) return;
    if (isEmailConv()) { sendMail(text); return; }
    if (!text) return;
    box.value = '';
    typingOut(false);
    const r = { local: true, clientId: newID(), conv: S.openId, text,
      msg: { direction: 'out', conversation_id: S.openId, sender: { type: 'agent', id: me(), name: S.agent.name }, parts: [{ type: 'text', text }], created_at: new Date().toISOString() } };
    S.byClient.set(r.clientId, r);
    renderRec(r);
    place(r);
    scrollDown();
    post(r);
  }
  // sendFile uploads a file the agent picked, then sends it as a reply
  // (the channel carries it: WeChat receives it as an image message).
  async function sendFile(file) {
    if (!file || !S.openId) return;
    if (isEmailConv()) { stageFile(file); return; }
    const r = { local: true, clientId: newID(), conv: S.openId, text: '',
      msg: { direction: 'out', conversation_id: S.openId, sender: { type: 'agent', id: me(), name: S.agent.name }, parts: [{ type: 'file', name: file.name, size: file.size }], created_at: new Date().toISOString() } };
    S.byClient.set(r.clientId, r);
    r.status = 'sending';
    renderRec(r);
    place(r);
    scrollDown();
    try {
      const part = await uploadFile(file);
      r.parts = [part];
      r.msg.parts = [part];
      post(r);
    } catch (e) {
      r.status = 'failed';
      r.error = e.message;
      renderRec(r);
      fail(e);
    }
  }
  async function post(r) {
    r.status = 'sending';
    r.error = '';
    renderRec(r);
    try {
      const t0 = Date.now();
      const m = await api('POST', '/v1/conversations/' + r.conv + '/messages', r.parts ? { parts: r.parts, client_id: r.clientId } : { text: r.text, client_id: r.clientId });
      if (m && m.created_at) S.skew = (t0 + Date.now()) / 2 - ts(m.created_at);
      upsertMsg(m, r.clientId);
    } catch (e) {
      if (!r.local) return;
      if (r.mail && e.status === 400 && r.conv === S.openId && restoreMail(r)) { fail(e); return; }
      r.status = 'failed';
      r.error = e.message;
      renderRec(r);
      fail(e);
    }
  }
  async function recall(r) {
    try { upsertMsg(await api('POST', '/v1/messages/' + r.msg.id + '/recall')); } catch (e) { fail(e); renderRec(r); }
  }
  function typingOut(on) {
    clearTimeout(S.typingStop);
    if (!S.openId) return;
    if (on) {
      if (Date.now() - S.typingSentAt > 3000) { S.typingSentAt = Date.now(); wsSend({ type: 'typing', conversation_id: S.openId, typing: true }); }
      S.typingStop = setTimeout(() => typingOut(false), 4000);
    } else if (S.typingSentAt) {
      S.typingSentAt = 0;
      wsSend({ type: 'typing', conversation_id: S.openId, typing: false });
    }
  }
  function showTyping(on, sender) {
    clearTimeout(S.typingHide);
    const t = $('typing');
    t.hidden = !on;
    if (!on) return;
    t.textContent = ((sender && sender.name) || 'Customer') + ' is typing\u2026';
    S.typingHide = setTimeout(() => { t.hidden = true; }, 6000);
  }

  // ---- read state ----
  const focused = () => document.visibilityState === 'visible' && document.hasFocus();
  function markReadSoon() { clearTimeout(S.readTimer); S.readTimer = setTimeout(markRead, 250); }
  async function markRead() {
    const c = S.convs.get(S.openId);
    if (!c || !focused()) return;
    const seq = S.recs.reduce((n, r) => (r.local ? n : Math.max(n, r.msg.seq || 0)), c.last_seq || 0);
    const unreadIn = c.unread > 0 || S.recs.some((r) => !r.local && r.msg.direction === 'in' && r.msg.seq > (c.read_seq || 0));
    if (seq <= (c.read_seq || 0) || !unreadIn) return;
    try {
      const r = await api('POST', '/v1/conversations/' + c.id + '/read', { seq });
      const cur = S.convs.get(c.id);
      if (cur && r) { cur.read_seq = Math.max(cur.read_seq || 0, r.read_seq); cur.unread = r.unread; renderList(); }
    } catch (e) { fail(e); }
  }

  // ---- notifications ----
  function notify() {
    if (!document.hidden) return;
    S.hiddenNew++;
    document.title = '(' + S.hiddenNew + ') Switchboard';
    const ctx = S.audio;
    if (!ctx) return;
    try {
      if (ctx.state === 'suspended') ctx.resume();
      const o = ctx.createOscillator(), g = ctx.createGain(), t = ctx.currentTime;
      o.frequency.setValueAtTime(880, t);
      o.frequency.setValueAtTime(660, t + 0.09);
      g.gain.setValueAtTime(0.0001, t);
      g.gain.exponentialRampToValueAtTime(0.15, t + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, t + 0.25);
      o.connect(g).connect(ctx.destination);
      o.start(t);
      o.stop(t + 0.3);
    } catch { /* no audio */ }
  }
  function unlockAudio() {
    if (S.audio || !window.AudioContext) return;
    try { S.audio = new AudioContext(); } catch { /* no audio */ }
  }

  // ---- events ----
  function applyEvent(ev) {
    switch (ev.type) {
      case 'message.created': {
        const m = ev.message || {};
        const old = S.convs.get(m.conversation_id || (ev.conversation && ev.conversation.id));
        const known = old ? Math.max(old.last_seq || 0, (old.last_message && old.last_message.seq) || 0) : 0;
        const c = mergeConv(ev.conversation);
        if (!c) return;
        const isNew = m.seq > known;
        if (isNew) {
          c.last_message = m;
          c.last_seq = Math.max(c.last_seq || 0, m.seq);
        }
        const watching = c.id === S.openId && focused();
        if (isNew && m.direction === 'in' && m.seq > (c.read_seq || 0) && !watching) c.unread = (c.unread || 0) + 1;
        if (isNew && m.direction === 'in') notify();
        if (c.id === S.openId) { upsertMsg(m); markReadSoon(); }
        renderList();
        break;
      }
      case 'message.updated': {
        const m = ev.message || {};
        const c = S.convs.get(ev.conversation_id || m.conversation_id);
        if (c && c.last_message && c.last_message.id === m.id) { c.last_message = m; renderList(); }
        upsertMsg(m);
        break;
      }
      case 'conversation.opened': case 'conversation.assigned': case 'conversation.updated': {
        const c = mergeConv(ev.conversation);
        if (c && c.id === S.openId) renderHead();
        renderList();
        break;
      }
      case 'conversation.read': {
        const c = S.convs.get(ev.conversation_id);
        if (!c) return;
        c.read_seq = Math.max(c.read_seq || 0, ev.read_seq || 0);
        if (c.id === S.openId && S.recs.length) c.unread = S.recs.filter((r) => !r.local && r.msg.direction === 'in' && r.msg.seq > c.read_seq).length;
        else if (c.read_seq >= (c.last_seq || 0)) c.unread = 0;
        else c.unread = Math.min(c.unread || 0, c.last_seq - c.read_seq);
        renderList();
        break;
      }
      case 'typing': {
        const s = ev.sender || {};
        if (ev.conversation_id === S.openId && !(s.type === 'agent' && s.id === me())) showTyping(!!ev.typing, s);
        break;
      }
    }
  }

  // ---- websocket ----
  function connect() {
    clearTimeout(S.retryTimer);
    S.retryTimer = 0;
    if (!S.token || S.ws) return;
    const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/v1/agent/ws?token=' + encodeURIComponent(S.token));
    S.ws = ws;
    ws.onmessage = (e) => {
      S.lastFrame = Date.now();
      let f;
      try { f = JSON.parse(e.data); } catch { return; }
      onFrame(f);
    };
    ws.onclose = (e) => {
      if (e.code === 4401) { S.ws = null; signedOut('Your session was revoked. Please sign in again.'); return; }
      drop(ws);
    };
  }
  function onFrame(f) {
    switch (f.type) {
      case 'hello': {
        const wasDown = S.everConnected;
        S.connected = true;
        S.everConnected = true;
        S.attempt = 0;
        setBanner();
        if (f.agent && f.agent.id) { S.agent = { ...S.agent, ...f.agent }; renderAgent(); }
        if (S.cursor == null || !isFinite(S.cursor)) saveCursor(f.cursor || 0);
        wsSend({ type: 'resume', cursor: S.cursor });
        S.reloadAfter = !S.hadStoredCursor && !wasDown; // events before our first cursor are in a fresh list only
        S.catchUpAfter = wasDown;
        clearInterval(S.pingTimer);
        S.pingTimer = setInterval(() => {
          if (Date.now() - S.lastFrame > 60000) return drop(S.ws);
          wsSend({ type: 'ping' });
        }, 25000);
        break;
      }
      case 'event':
        if (f.cursor == null) { applyEvent(f.event || {}); break; }
        if (S.cursor != null && f.cursor <= S.cursor) break;
        applyEvent(f.event || {});
        saveCursor(f.cursor);
        break;
      case 'resumed':
        if (f.cursor > S.cursor) saveCursor(f.cursor);
        if (S.reloadAfter) loadList();
        if (S.catchUpAfter) catchUp();
        S.reloadAfter = S.catchUpAfter = false;
        break;
      case 'reset':
        saveCursor(f.cursor || 0);
        S.reloadAfter = S.catchUpAfter = false;
        loadList();
        catchUp();
        break;
      case 'error':
        if (f.code !== 'rate_limited') toast(f.message || 'Something went wrong.');
        break;
    }
  }
  function drop(ws) {
    if (!ws || S.ws !== ws) return;
    ws.onclose = ws.onmessage = null;
    try { ws.close(); } catch { /* closed */ }
    S.ws = null;
    S.connected = false;
    clearInterval(S.pingTimer);
    showTyping(false);
    if (!S.token) return;
    const cap = Math.min(30000, 500 * 2 ** S.attempt);
    S.attempt = Math.min(S.attempt + 1, 16);
    setBanner();
    S.retryTimer = setTimeout(connect, cap / 2 + Math.random() * cap / 2);
  }
  function stopSocket() {
    const ws = S.ws;
    S.ws = null;
    S.connected = false;
    S.everConnected = false;
    S.attempt = 0;
    clearTimeout(S.retryTimer);
    clearInterval(S.pingTimer);
    if (ws) { ws.onclose = ws.onmessage = null; try { ws.close(1000); } catch { /* closed */ } }
    setBanner();
  }
  function setBanner() { $('reconnecting').hidden = S.connected || !S.token || S.attempt === 0; }
  function wsSend(f) { if (S.ws && S.connected) { try { S.ws.send(JSON.stringify(f)); } catch { /* closing */ } } }
  function wake() {
    if (S.token && !S.ws && S.retryTimer) { S.attempt = 0; connect(); }
  }

  // ---- wiring ----
  function init() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('presence').addEventListener('click', togglePresence);
    for (const b of document.querySelectorAll('[data-tab]')) b.addEventListener('click', () => setTab(b.dataset.tab));
    $('conv-list').addEventListener('scroll', (e) => {
      const x = e.target;
      if (x.scrollHeight - x.scrollTop - x.clientHeight < 80) loadList(true);
    });
    $('history').addEventListener('scroll', () => { if ($('history').scrollTop < 40) loadOlder(); });
    $('assign').addEventListener('change', assign);
    $('resolve').addEventListener('click', resolve);
    $('composer-form').addEventListener('submit', (e) => { e.preventDefault(); sendText(); });
    $('attach').addEventListener('change', (e) => { const f = e.target.files[0]; e.target.value = ''; sendFile(f); });
    const box = $('composer');
    box.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' || e.shiftKey || e.isComposing || e.keyCode === 229) return;
      // A mail is written in lines: Enter is a new line there, Ctrl+Enter sends.
      if (isEmailConv() && !e.ctrlKey && !e.metaKey) return;
      e.preventDefault();
      sendText();
    });
    const fields = ['email-to', 'email-cc', 'email-subject'];
    fields.forEach((id, i) => {
      $(id).addEventListener('input', () => { S.mail.dirty[id] = true; });
      // Enter in a header field moves on instead of sending the mail.
      $(id).addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !e.isComposing) { e.preventDefault(); $(fields[i + 1] || 'composer').focus(); }
      });
    });
    box.addEventListener('input', () => typingOut(box.value.trim() !== ''));
    box.addEventListener('blur', () => typingOut(false));
    for (const t of ['pointerdown', 'keydown']) document.addEventListener(t, unlockAudio, { once: true, capture: true });
    const seen = () => {
      if (document.hidden) return;
      S.hiddenNew = 0;
      document.title = 'Switchboard';
      markReadSoon();
      wake();
    };
    document.addEventListener('visibilitychange', seen);
    window.addEventListener('focus', seen);
    window.addEventListener('online', wake);
    // Recall buttons disappear once the two-minute window has passed.
    setInterval(() => { for (const r of S.recs) if (r.el && r.el.querySelector('[data-testid="recall"]') && !canRecall(r)) renderRec(r); }, 5000);
    setInterval(() => { if (S.token) loadAgents(); }, 60000);

    let saved = null;
    try { saved = JSON.parse(ls.get(SESSION) || 'null'); } catch { /* corrupt */ }
    if (saved && saved.token && !(saved.expires_at && ts(saved.expires_at) < Date.now())) startApp(saved.token, saved.agent);
    else showLogin('');
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
