// Doorward web app: keeps a home's pages live over server-sent events. No dependencies, no
// build step. The texts mirror crates/server/src/web/render.rs; keep the two in step.
'use strict';

(function () {
  const SILENCE_MS = 2000; // I14: no event for this long means "connection lost — states unknown"
  const RECONNECT_MS = 1000;
  const home = document.body.dataset.home;
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : '';
  let offset = 0; // server clock minus this clock, ms

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children || []) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    return e;
  }

  function age(ms) {
    if (ms < 10000) return (ms / 1000).toFixed(1) + ' s';
    if (ms < 60000) return Math.floor(ms / 1000) + ' s';
    if (ms < 3600000) return Math.floor(ms / 60000) + ' min';
    if (ms < 172800000) return Math.floor(ms / 3600000) + ' h';
    return Math.floor(ms / 86400000) + ' d';
  }

  function when(ms) {
    return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  }

  const VALUES = {
    locked: 'Locked', unlocked: 'Unlocked', unlocking: 'Unlocking', moving: 'Bolt moving',
    jammed: 'Jammed', bolt_thrown_door_open: 'Bolt out, door open', closed: 'Closed', open: 'Open'
  };
  const PHASES = {
    scheduled: 'scheduled', at_door: 'driver at the door', unlocking: 'unlocking',
    entry: 'door unlocked for the entry', relocked: 'relocked', egress_witnessed: 'driver seen leaving',
    done: 'done', incident: 'ended with an alarm', expired: 'window ended without an entry',
    cancelled: 'called off before anybody was let in'
  };

  function valueText(kind, v) {
    if (kind === 'camera') return v && v.recording ? 'Recording' : 'Not recording';
    return VALUES[v] || String(v).replace(/_/g, ' ');
  }

  function by(device, d) {
    if (device === d.lock_id) return 'the lock';
    if (device === d.camera_id) return 'the camera';
    return device;
  }

  function updateCard(i, kind, d) {
    const card = document.getElementById(kind + '-' + i);
    if (!card) return false;
    const v = d[kind];
    const known = v.shown.known === true;
    card.classList.toggle('unknown', !known);
    let basis;
    if (known) {
      basis = 'confirmed by ' + by(v.evidence ? v.evidence.device : '?', d) + ' ' + age(v.age_ms || 0) + ' ago';
    } else if (v.shown.last_age_ms != null && v.shown.last != null) {
      basis = 'last confirmed ' + valueText(kind, v.shown.last).toLowerCase() + ' ' + age(v.shown.last_age_ms) + ' ago';
    } else if (v.shown.last_age_ms != null) {
      basis = 'last confirmed ' + age(v.shown.last_age_ms) + ' ago';
    } else {
      basis = 'never confirmed by a signed report';
    }
    const ev = v.evidence;
    card.querySelector('.value').textContent = known ? valueText(kind, v.shown.value) : 'UNKNOWN';
    card.querySelector('.basis').textContent = basis;
    card.querySelector('.evidence').textContent = ev
      ? 'signed report #' + ev.seq + ' from ' + ev.device + ' · ' + ev.digest.slice(0, 16) + '…'
      : 'no signed report';
    return true;
  }

  function onState(st) {
    offset = st.at_ms - Date.now();
    let rebuilt = true;
    st.doors.forEach(function (d, i) {
      rebuilt = updateCard(i, 'lock', d) && updateCard(i, 'door', d) && updateCard(i, 'camera', d) && rebuilt;
      const del = document.getElementById('delivery-' + i);
      if (del) {
        del.textContent = d.delivery
          ? 'Delivery ' + d.delivery.delivery + ' · ' + (PHASES[d.delivery.phase] || 'in progress')
          : 'No delivery in progress';
      }
    });
    const doors = document.getElementById('doors');
    if (doors && !rebuilt && st.doors.length) location.reload(); // a door was paired meanwhile
    // Alarms acknowledged elsewhere leave the page.
    document.querySelectorAll('#alarms-live .alarm').forEach(function (a) {
      if (st.open_alarms.indexOf(Number(a.dataset.alarm)) < 0) a.remove();
    });
  }

  function hiddenToken() {
    return el('input', { type: 'hidden', name: 'csrf', value: csrf });
  }

  function onAlarm(a) {
    const box = document.getElementById('alarms-live');
    if (!box || document.getElementById('alarm-' + a.id)) return;
    const ev = a.evidence;
    const card = el('article', { class: 'alarm', id: 'alarm-' + a.id, 'data-alarm': a.id, role: 'alert' }, [
      el('h2', { text: 'Alarm: ' + String(a.kind).replace(/_/g, ' ') }),
      el('p', { text: when(a.raised_ms) + (a.device ? ' · device ' + a.device : '') }),
      el('p', { class: 'detail', text: a.detail || '' }),
      el('p', { class: 'evidence', text: ev
        ? 'Evidence: signed report #' + ev.seq + ' from ' + ev.device + ' · ' + ev.digest
        : 'Evidence: the silence itself (no report arrived in time)' }),
      el('p', { class: 'action' }, [el('strong', { text: 'What to do: ' }), a.action || '']),
      el('form', { method: 'post', action: '/homes/' + home + '/alarms/' + a.id + '/ack' }, [
        hiddenToken(), el('button', { type: 'submit', text: 'Acknowledge' })
      ])
    ]);
    box.prepend(card);
    const none = document.getElementById('no-alarms');
    if (none) none.remove();
  }

  function onApproval(a) {
    const box = document.getElementById('approvals-live');
    if (!box || document.getElementById('approval-' + a.request)) return;
    if (a.deadline_ms <= Date.now() + offset) return;
    const answer = function (what, cls, label) {
      return el('form', { method: 'post', action: '/homes/' + home + '/approvals/' + a.request + '/' + what }, [
        hiddenToken(), el('button', { type: 'submit', class: cls, text: label })
      ]);
    };
    const dl = el('dl', {}, [
      el('dt', { text: 'Carrier' }), el('dd', { text: a.carrier }),
      el('dt', { text: 'Driver key' }), el('dd', { class: 'mono', text: a.driver.slice(0, 16) + '…' }),
      el('dt', { text: 'Delivery' }), el('dd', { text: a.delivery }),
      el('dt', { text: 'Door' }), el('dd', { text: a.lock })
    ]);
    box.prepend(el('article', { class: 'approval', id: 'approval-' + a.request, 'data-request': a.request, 'data-deadline': a.deadline_ms }, [
      el('h2', { text: 'Someone is at the door' }), dl,
      el('p', { class: 'countdown', text: '' }),
      el('div', { class: 'buttons' }, [answer('approve', 'approve', 'Approve'), answer('deny', 'deny', 'Deny')])
    ]));
    const none = document.getElementById('no-approvals');
    if (none) none.remove();
    tick();
  }

  function tick() {
    const now = Date.now() + offset;
    document.querySelectorAll('.approval').forEach(function (a) {
      const left = Number(a.dataset.deadline) - now;
      const c = a.querySelector('.countdown');
      if (left > 0) {
        c.textContent = 'Answer within ' + Math.ceil(left / 1000) + ' s';
      } else {
        c.textContent = 'The deadline passed: the entry was denied.';
        a.classList.add('expired');
        a.querySelectorAll('button').forEach(function (b) { b.disabled = true; });
      }
    });
  }

  // The live connection and its watchdog (I14).
  let source = null;
  let last = Date.now();
  let lost = false;
  let retryAt = 0;

  function setLost(on) {
    if (on === lost) return;
    lost = on;
    const b = document.getElementById('conn');
    if (b) b.hidden = !on;
    document.body.classList.toggle('stale', on);
  }

  function connect() {
    if (source) source.close();
    source = new EventSource('/homes/' + home + '/live');
    const seen = function () { last = Date.now(); setLost(false); };
    const on = function (name, f) {
      source.addEventListener(name, function (e) {
        seen();
        if (f) { try { f(JSON.parse(e.data)); } catch (err) { /* a bad event is ignored */ } }
      });
    };
    on('state', onState);
    on('alarm', onAlarm);
    on('approval', onApproval);
    on('lagged', null);
    on('heartbeat', null);
  }

  function watchdog() {
    const now = Date.now();
    if (now - last > SILENCE_MS) {
      setLost(true);
      if (now >= retryAt) {
        retryAt = now + RECONNECT_MS;
        connect();
      }
    }
    tick();
  }

  // The record page: verify a downloaded export, or the current record, in the page.
  function verifyForm() {
    const form = document.getElementById('verify-form');
    if (!form) return;
    form.addEventListener('submit', async function (e) {
      e.preventDefault();
      const out = document.getElementById('verdict');
      out.textContent = 'Verifying…';
      const file = document.getElementById('export-file').files[0];
      const body = file ? await file.arrayBuffer() : new ArrayBuffer(0);
      try {
        const r = await fetch(form.action, {
          method: 'POST', body: body, credentials: 'same-origin',
          headers: { 'X-CSRF-Token': csrf, 'Content-Type': 'application/octet-stream' }
        });
        const v = await r.json();
        out.replaceChildren();
        if (v.verified) {
          out.appendChild(el('p', { class: 'ok', text: 'Verified: ' + v.entries + ' entries from index ' + v.first_index +
            ', ' + v.checkpoints + ' signed checkpoints; head ' + v.head.slice(0, 16) + '…' }));
        } else {
          out.appendChild(el('p', { class: 'error', text: 'NOT VERIFIED. First bad entry: ' +
            (v.first_bad_entry == null ? 'the header' : v.first_bad_entry) + '. ' + v.error }));
          if (v.proven) {
            out.appendChild(el('p', { text: 'Entries ' + v.proven[0] + ' to ' + (v.proven[1] - 1) +
              ' are still covered by a verified signed checkpoint.' }));
          }
        }
      } catch (err) {
        out.textContent = 'The verification could not be run: ' + err;
      }
    });
  }

  // The entries page: each entry's frame player. The buttons are reachable with the
  // keyboard; on the picture, left and right arrows step and space plays or pauses.
  const PLAY_MS = 125; // 8 frames a second, the camera's pace
  function players() {
    document.querySelectorAll('figure.clip').forEach(function (fig) {
      const srcs = (fig.dataset.srcs || '').split(' ').filter(Boolean);
      if (srcs.length === 0) return;
      const img = fig.querySelector('img.frame');
      const counter = fig.querySelector('.counter');
      const play = fig.querySelector('button.play');
      const entry = fig.closest('.entry');
      const del = entry ? entry.dataset.delivery : '';
      let i = 0;
      let timer = null;
      function show(n) {
        i = (n + srcs.length) % srcs.length;
        img.src = srcs[i];
        img.alt = 'Frame ' + (i + 1) + ' of ' + srcs.length + ' recorded at the door for delivery ' + del;
        counter.textContent = 'Frame ' + (i + 1) + ' of ' + srcs.length;
        fig.dataset.frame = String(i);
      }
      function stop() {
        if (timer) clearInterval(timer);
        timer = null;
        play.textContent = 'Play';
        play.setAttribute('aria-pressed', 'false');
      }
      function toggle() {
        if (timer) { stop(); return; }
        if (i + 1 >= srcs.length) show(0);
        play.textContent = 'Pause';
        play.setAttribute('aria-pressed', 'true');
        timer = setInterval(function () {
          if (i + 1 >= srcs.length) stop(); else show(i + 1);
        }, PLAY_MS);
      }
      fig.querySelector('button.prev').addEventListener('click', function () { stop(); show(i - 1); });
      fig.querySelector('button.next').addEventListener('click', function () { stop(); show(i + 1); });
      play.addEventListener('click', toggle);
      img.tabIndex = 0;
      img.addEventListener('keydown', function (e) {
        if (e.key === 'ArrowLeft') { stop(); show(i - 1); e.preventDefault(); }
        if (e.key === 'ArrowRight') { stop(); show(i + 1); e.preventDefault(); }
        if (e.key === ' ') { toggle(); e.preventDefault(); }
      });
      fig.querySelector('.player').hidden = false;
    });
  }

  // The access page: while a lock has not confirmed a revocation, the list is fetched again
  // every REFRESH_MS until every lock has.
  const REFRESH_MS = 2000;
  function revocationsRefresh() {
    if (!home || !document.querySelector('#revocations[data-pending]')) return;
    const timer = setInterval(async function () {
      const cur = document.getElementById('revocations');
      if (!cur || !cur.hasAttribute('data-pending')) { clearInterval(timer); return; }
      try {
        const r = await fetch('/homes/' + home + '/access', { credentials: 'same-origin' });
        if (!r.ok) return;
        const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
        const next = doc.getElementById('revocations');
        if (next) cur.replaceWith(document.importNode(next, true));
      } catch (err) { /* tried again at the next tick */ }
    }, REFRESH_MS);
  }

  document.addEventListener('DOMContentLoaded', function () {
    verifyForm();
    players();
    revocationsRefresh();
    if (!home) return;
    // A page kept in the back-forward cache would hold its live connection open and use up
    // the browser's few connections to this server: close it when the page is hidden, and
    // open it again if the page comes back.
    window.addEventListener('pagehide', function () {
      if (source) source.close();
      source = null;
    });
    window.addEventListener('pageshow', function (e) {
      if (e.persisted) { last = Date.now(); connect(); }
    });
    connect();
    setInterval(watchdog, 250);
    tick();
  });
})();
