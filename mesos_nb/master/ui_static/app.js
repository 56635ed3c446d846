// mesos-nb master web UI: tables paginated on the server, live plots fed by server-sent events.
"use strict";
(function () {
  const $ = (s) => document.querySelector(s);
  const ui = (window.mesosUI = { doc: null, events: 0, version: -1, plotUpdates: 0 });
  const pages = {
    agents: { offset: 0, limit: 25, total: 0 },
    tasks: { offset: 0, limit: 25, total: 0 },
  };
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  // Each table's header, in the order its loader below writes a row's cells.
  const heads = {
    agents: ["agent", "id", "CPUs used / allocated / total", "memory MB used / allocated / total", "tasks", "state", "maintenance", "drain"],
    roles: ["role", "weight", "guarantee", "limit", "allocated", "DRF share"],
    frameworks: ["name", "id", "roles", "dominant share", "CPUs", "memory MB", "tasks", "offers", "state"],
    tasks: ["task", "name", "framework", "agent", "state", "CPUs", "mem MB", "updated", "sandbox"],
  };
  for (const [name, cols] of Object.entries(heads)) {
    $(`#${name}-table`).innerHTML = `<thead><tr>${cols.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody></tbody>`;
  }
  // the paged tables' position ("1–25 of 40") between a ‹ prev and a next › button
  for (const name of Object.keys(pages)) {
    const at = $(`#${name}-pager`);
    at.insertAdjacentHTML("beforebegin", `<button data-page="${name}" data-dir="-1">‹ prev</button>`);
    at.insertAdjacentHTML("afterend", `<button data-page="${name}" data-dir="1">next ›</button>`);
  }
  const num = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const when = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "");

  async function getJSON(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
    return r.json();
  }

  function pager(name, d) {
    const p = pages[name];
    p.total = d.total;
    const end = Math.min(d.total, p.offset + d.rows.length);
    $(`#${name}-pager`).textContent = d.total ? `${p.offset + 1}–${end} of ${d.total}` : "none";
    $(`#${name}-count`).textContent = `(${d.total})`;
  }

  // "DRAINING from 01:00 for 1h" (local time; the date too when it is not today)
  function span(ns) {
    const s = Math.round(ns / 1e9);
    const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s % 86400 / 3600), "h"], [Math.floor(s % 3600 / 60), "m"], [s % 60, "s"]];
    return parts.filter(([v]) => v).map(([v, u]) => `${v}${u}`).join("") || "0s";
  }
  function maintenanceText(m) {
    if (m.mode !== "DRAINING" || !m.window) return m.mode;
    const start = new Date(m.window.start.nanoseconds / 1e6);
    const day = start.toDateString() === new Date().toDateString() ? "" : `${start.toLocaleDateString()} `;
    const dur = m.window.duration ? ` for ${span(m.window.duration.nanoseconds)}` : "";
    return `DRAINING from ${day}${start.toLocaleTimeString()}${dur}`;
  }

  async function loadAgents() {
    const p = pages.agents;
    const q = encodeURIComponent($("#agents-filter").value);
    const d = await getJSON(`/master/ui/agents?offset=${p.offset}&limit=${p.limit}&q=${q}`);
    $("#agents-table tbody").innerHTML = d.rows.map((a) => `<tr data-agent="${esc(a.id)}">
      <td>${esc(a.hostname)}:${a.port}</td><td>${esc(a.id)}</td>
      <td class="num">${num(a.used.cpus)} / ${num(a.allocated.cpus)} / ${num(a.total.cpus)}</td>
      <td class="num">${num(a.used.mem, 0)} / ${num(a.allocated.mem, 0)} / ${num(a.total.mem, 0)}</td>
      <td class="num">${a.tasks}</td><td>${a.active ? "active" : "inactive"}</td>
      <td class="mode-${esc(a.maintenance.mode)}">${esc(maintenanceText(a.maintenance))}</td>
      <td class="drain">${esc(a.drain || "")}</td></tr>`).join("");
    pager("agents", d);
  }

  async function loadFrameworks() {
    const d = await getJSON("/master/ui/frameworks");
    $("#frameworks-table tbody").innerHTML = d.rows.map((f) => `<tr data-framework="${esc(f.id)}">
      <td>${esc(f.name)}</td><td>${esc(f.id)}</td><td>${esc(f.roles.join(", "))}</td>
      <td class="num">${num(f.share, 3)}</td><td class="num">${num(f.allocated.cpus)}</td>
      <td class="num">${num(f.allocated.mem, 0)}</td><td class="num">${f.tasks}</td><td class="num">${f.offers}</td>
      <td>${f.connected ? "connected" : "disconnected"}</td></tr>`).join("");
    $("#frameworks-count").textContent = `(${d.total})`;
  }

  // {cpus: 4, mem: 2048} -> "cpus 4 · mem 2048"; nothing -> "–"
  const quantities = (q) => Object.keys(q || {}).length
    ? Object.entries(q).map(([n, v]) => `${esc(n)} ${+Number(v).toFixed(3)}`).join(" · ") : "–";
  async function loadRoles() {
    const d = await getJSON("/master/ui/roles");
    $("#roles-table tbody").innerHTML = d.rows.map((r) => `<tr data-role="${esc(r.role)}">
      <td>${esc(r.role)}</td><td class="num">${+Number(r.weight).toFixed(3)}</td>
      <td>${quantities(r.guarantee)}</td><td>${quantities(r.limit)}</td><td>${quantities(r.allocated)}</td>
      <td class="num">${num(r.share, 3)}</td></tr>`).join("");
    $("#roles-count").textContent = `(${d.total})`;
  }

  async function loadTasks() {
    const p = pages.tasks;
    const q = encodeURIComponent($("#tasks-filter").value);
    const st = encodeURIComponent($("#tasks-state").value);
    const d = await getJSON(`/master/ui/tasks?offset=${p.offset}&limit=${p.limit}&q=${q}&state=${st}`);
    $("#tasks-table tbody").innerHTML = d.rows.map((t) => `<tr data-task="${esc(t.id)}">
      <td>${esc(t.id)}</td><td>${esc(t.name)}</td><td>${esc(t.framework)}</td><td>${esc(t.agent_id)}</td>
      <td class="state-${esc(t.state)}" title="${esc(t.message)}">${esc(t.state)}</td>
      <td class="num">${num(t.cpus)}</td><td class="num">${num(t.mem, 0)}</td><td>${when(t.updated)}</td>
      <td><button class="open-log" data-agent="${esc(t.agent_id)}" data-sandbox="${esc(t.sandbox)}" data-task="${esc(t.id)}">log</button></td></tr>`).join("");
    pager("tasks", d);
  }

  // ------------------------------------------------------------------ refresh scheduling
  let refreshing = false, again = false;
  async function refreshTables() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try { await Promise.all([loadAgents(), loadRoles(), loadFrameworks(), loadTasks()]); }
    catch (e) { console.warn(e); }
    finally {
      refreshing = false;
      if (again) { again = false; setTimeout(refreshTables, 250); }
    }
  }

  // ------------------------------------------------------------------ plots
  function applyPlots(updates) {
    const doc = ui.doc;
    if (!doc) return;
    for (const u of updates) {
      const src = doc.get_model_by_name(`${u.name}-source`);
      if (!src) continue;
      if (u.mode === "stream") {
        const t = src.data.time || [];
        if (!u.data.time || !u.data.time.length) continue;
        if (t.length && u.data.time[0] <= t[t.length - 1]) continue;
        src.stream(u.data, u.rollover);
      } else {
        if (u.factors) {
          const r = doc.get_model_by_name(`${u.name}-range`);
          if (r && JSON.stringify(r.factors) !== JSON.stringify(u.factors)) r.factors = u.factors;
        }
        src.data = u.data;
      }
    }
    ui.plotUpdates += 1;
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = src;
      el.onload = resolve;
      el.onerror = () => reject(new Error(`cannot load ${src}`));
      document.head.appendChild(el);
    });
  }

  async function loadPlots() {
    if (window.BOKEH_JS && typeof Bokeh === "undefined") await loadScript(window.BOKEH_JS);
    if (typeof Bokeh === "undefined") {
      $("#plots-missing").hidden = false;
      $("#plots-missing").textContent = "Plots need bokeh on the master: pip install 'mesos-nb[dashboard]'.";
      return;
    }
    const d = await getJSON("/master/ui/plots");
    await Bokeh.embed.embed_item(d.item, "plots");
    ui.doc = Bokeh.documents[Bokeh.documents.length - 1];
    applyPlots(d.updates);
  }

  function summary(s) {
    const c = s.cluster;
    $("#summary").textContent = `${s.master} · ${s.agents} agents · ${s.frameworks} frameworks · ` +
      `${s.tasks.active} active tasks · ${s.offers} offers · CPUs ${num(c.used.cpus)} used / ` +
      `${num(c.allocated.cpus)} allocated / ${num(c.total.cpus)}`;
  }

  function connect() {
    const es = new EventSource("/master/ui/stream");
    let lastAgents = 0;
    es.addEventListener("ui", (e) => {
      const ev = JSON.parse(e.data);
      ui.events += 1;
      $("#live").classList.add("on");
      summary(ev.summary);
      applyPlots(ev.plots);
      const now = Date.now();
      if (ev.version !== ui.version) {
        ui.version = ev.version;
        lastAgents = now;
        refreshTables();
      } else if (now - lastAgents > 2000) {  // used resources change every sample
        lastAgents = now;
        loadAgents().catch(console.warn);
      }
    });
    es.onerror = () => $("#live").classList.remove("on");
  }

  // ------------------------------------------------------------------ log follower
  const log = { agent: null, sandbox: null, file: "stdout", offset: 0, timer: null, busy: false };
  async function pollLog() {
    if (log.busy || !log.agent) return;
    log.busy = true;
    try {
      const path = `${log.sandbox}/${log.file}`;
      const r = await fetch(`/master/files/read?agent_id=${encodeURIComponent(log.agent)}&path=${encodeURIComponent(path)}&offset=${log.offset}&length=65536`);
      if (r.ok) {
        const d = await r.json();
        if (d.data) {
          const pre = $("#log-text");
          pre.textContent += d.data;
          log.offset = d.offset + new TextEncoder().encode(d.data).length;
          if ($("#log-follow").checked) pre.scrollTop = pre.scrollHeight;
        }
        $("#log-status").textContent = `${path} · ${log.offset} bytes`;
      } else {
        $("#log-status").textContent = `${path}: ${r.status} ${await r.text()}`;
      }
    } catch (e) {
      $("#log-status").textContent = String(e);
    } finally {
      log.busy = false;
    }
  }
  function openLog(agent, sandbox, task, file) {
    Object.assign(log, { agent, sandbox, file: file || "stdout", offset: 0 });
    $("#log-section").hidden = false;
    $("#log-task").textContent = `${task} (${log.file})`;
    $("#log-text").textContent = "";
    document.querySelectorAll(".log-file").forEach((b) => b.classList.toggle("active", b.dataset.file === log.file));
    clearInterval(log.timer);
    log.timer = setInterval(() => { if ($("#log-follow").checked) pollLog(); }, 500);
    pollLog();
    log.task = task;
  }

  // ------------------------------------------------------------------ wiring
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.classList.contains("open-log")) openLog(b.dataset.agent, b.dataset.sandbox, b.dataset.task);
    else if (b.classList.contains("log-file") && log.agent) openLog(log.agent, log.sandbox, log.task, b.dataset.file);
    else if (b.id === "log-close") { clearInterval(log.timer); log.agent = null; $("#log-section").hidden = true; }
    else if (b.dataset.page) {
      const p = pages[b.dataset.page];
      p.offset = Math.max(0, Math.min(p.offset + Number(b.dataset.dir) * p.limit, Math.max(0, p.total - 1)));
      (b.dataset.page === "agents" ? loadAgents : loadTasks)().catch(console.warn);
    }
  });
  let filterTimer = null;
  for (const [id, name] of [["#agents-filter", "agents"], ["#tasks-filter", "tasks"], ["#tasks-state", "tasks"]]) {
    $(id).addEventListener(id === "#tasks-state" ? "change" : "input", () => {
      clearTimeout(filterTimer);
      pages[name].offset = 0;
      filterTimer = setTimeout(() => (name === "agents" ? loadAgents : loadTasks)().catch(console.warn), 150);
    });
  }

  // performance marks (from navigation start) for bench/webui_scale.py
  refreshTables().then(() => { performance.mark("mesos-tables"); document.body.setAttribute("data-tables-ready", "1"); });
  loadPlots().then(() => performance.mark("mesos-plots")).catch((e) => { console.warn(e); }).finally(connect);
})();
