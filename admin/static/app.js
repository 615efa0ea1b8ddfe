// hopper status page: polls the JSON APIs of the server that served it and
// renders them. No dependencies; every value goes in through textContent.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const every = Math.max(500, Number(params.get("refresh")) || 2000);
  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function duration(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + (s % 60) + "s";
    return s + "s";
  }

  function latency(ms) {
    if (!ms) return "–";
    return ms < 1 ? (ms * 1000).toFixed(0) + " µs" : ms.toFixed(1) + " ms";
  }

  function time(t) { return t ? new Date(t).toLocaleTimeString() : ""; }

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store", credentials: "same-origin" });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  function renderStats(s) {
    const h = $("health");
    h.textContent = s.health.ok ? "healthy" : "unhealthy";
    h.className = "badge " + (s.health.ok ? "ok" : "bad");
    h.title = s.health.reason;
    $("proxy").textContent = s.proxy ? "proxy " + s.proxy : "";
    $("t-active").textContent = s.active;
    $("t-tunnels").textContent = s.tunnels;
    let failed = 0;
    for (const [result, n] of Object.entries(s.by_result)) if (result !== "ok") failed += n;
    $("t-failed").textContent = failed;
    $("t-up").textContent = bytes(s.bytes_up);
    $("t-down").textContent = bytes(s.bytes_down);
    $("t-uptime").textContent = duration(s.uptime_seconds);
    if (s.egress === "direct") {
      $("t-healthy").textContent = "direct";
    } else {
      let healthy = 0, size = 0;
      for (const p of s.pools) { healthy += p.healthy; size += p.size; }
      $("t-healthy").textContent = healthy + " / " + size;
    }
    $("step").textContent = s.series_step_seconds;
    renderSpark(s.series, s.series_step_seconds);
    renderErrors(s.recent_errors);
  }

  function renderSpark(series, step) {
    const W = 600, H = 80, pad = 4;
    const rates = series.map((p) => (p.up + p.down) / step);
    const peak = Math.max(1, ...rates);
    const x = (i) => pad + (series.length > 1 ? (i / (series.length - 1)) * (W - 2 * pad) : 0);
    const y = (v) => H - pad - (v / peak) * (H - 2 * pad);
    const pts = rates.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1));
    $("spark-line").setAttribute("points", pts.join(" "));
    $("spark-area").setAttribute("d", pts.length ? "M" + pad + "," + H + " L" + pts.join(" L") + " L" + (W - pad) + "," + H + " Z" : "");
    const g = $("spark-errors");
    g.replaceChildren();
    series.forEach((p, i) => {
      if (!p.errors) return;
      const l = document.createElementNS("http://www.w3.org/2000/svg", "line");
      l.setAttribute("x1", x(i)); l.setAttribute("x2", x(i));
      l.setAttribute("y1", H); l.setAttribute("y2", H - 10);
      g.appendChild(l);
    });
    const now = rates.length ? rates[rates.length - 1] : 0;
    $("rate").textContent = "now " + bytes(now) + "/s · peak " + bytes(peak === 1 ? 0 : peak) + "/s";
  }

  function renderUpstreams(u) {
    const body = $("upstream-rows");
    const rows = [];
    $("egress").textContent = u.egress === "direct" ? "(egressing directly)" : "";
    if (u.egress === "direct") {
      const tr = el("tr", "up-row state-healthy");
      tr.dataset.label = "direct";
      tr.append(el("td", "", "–"), el("td", "label", "direct"), el("td", "state", "healthy"));
      for (let i = 0; i < 7; i++) tr.append(el("td", "", ""));
      rows.push(tr);
    }
    for (const p of u.pools) {
      for (const up of p.upstreams) {
        const tr = el("tr", "up-row state-" + up.state);
        tr.dataset.pool = p.name;
        tr.dataset.label = up.label;
        tr.append(
          el("td", "", p.name),
          el("td", "label", up.label),
          el("td", "state", up.state),
          el("td", "num", up.successes),
          el("td", "num", up.failures),
          el("td", "num", up.target_failures),
          el("td", "num", latency(up.latency_ms)),
          el("td", "num", (up.success_rate * 100).toFixed(0) + "%"),
          el("td", "", up.quarantined_until ? time(up.quarantined_until) : ""),
          el("td", "err", up.last_error),
        );
        rows.push(tr);
      }
      if (!p.upstreams.length) {
        const tr = el("tr", "empty");
        const td = el("td", "", "pool " + p.name + " has no upstreams");
        td.colSpan = 10;
        tr.append(td);
        rows.push(tr);
      }
    }
    body.replaceChildren(...rows);
  }

  function renderErrors(errs) {
    const rows = errs.map((e) => {
      const tr = el("tr", "error-row");
      tr.append(el("td", "", time(e.at)), el("td", "", e.proto), el("td", "", e.result),
        el("td", "label", e.target), el("td", "label", e.upstream), el("td", "err", e.error));
      return tr;
    });
    if (!rows.length) {
      const tr = el("tr", "empty");
      const td = el("td", "", "none");
      td.colSpan = 6;
      tr.append(td);
      rows.push(tr);
    }
    $("error-rows").replaceChildren(...rows);
  }

  async function refresh() {
    try {
      const [stats, ups] = await Promise.all([getJSON("api/stats"), getJSON("api/upstreams")]);
      renderStats(stats);
      renderUpstreams(ups);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.loaded = "true";
    } catch (e) {
      $("updated").textContent = "update failed: " + e.message;
      $("health").className = "badge unknown";
    } finally {
      setTimeout(refresh, every);
    }
  }

  refresh();
})();
