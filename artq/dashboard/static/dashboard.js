/* artq dashboard: fetches the JSON API and draws with uPlot (bundled, no CDN).
 * Every value from the API goes into the page through textContent (see el()), never innerHTML. */
(function () {
  "use strict";
  const REFRESH_MS = 5 * 60 * 1000;
  let current = null;
  let plot = null;
  let lastView = null;

  // -- helpers ------------------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children || []) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  const $ = (id) => document.getElementById(id);
  const ts = (iso) => Date.parse(iso) / 1000;
  const pad = (n) => String(n).padStart(2, "0");
  function hhmm(iso) { const d = new Date(iso); return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()); }
  function dayHour(iso) {
    const d = new Date(iso);
    return d.toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" }) + " " + hhmm(iso);
  }
  function utcTick(t) {
    // 24-hour UTC clock; midnight shows the date instead, so days are easy to find
    const d = new Date(t * 1000);
    if (d.getUTCHours() === 0) return d.toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" });
    return pad(d.getUTCHours()) + ":00";
  }
  function hourRange(iso) { const d = new Date(iso); return hhmm(iso) + "–" + pad((d.getUTCHours() + 1) % 24) + ":00"; }
  const ms = (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US") + " ms");
  const pct = (v) => (v === null || v === undefined ? "–" : Math.round(v * 100) + " %");
  function age(minutes) {
    if (minutes === null || minutes === undefined) return "–";
    if (minutes < 90) return minutes + " min";
    const h = Math.floor(minutes / 60);
    return h < 48 ? h + " h" : Math.floor(h / 24) + " days";
  }
  function signedMs(c) { return (c > 0 ? "+" : c < 0 ? "−" : "") + Math.abs(Math.round(c)).toLocaleString("en-US") + " ms"; }
  function setCard(id, cls, big, small) {
    const card = $(id);
    card.className = "card " + (cls || "");
    card.querySelector(".big").textContent = big;
    card.querySelector(".small").textContent = small;
  }
  // the value the alert rule compares with the threshold: the point forecast or its upper bound
  function compared(v, f) { return v.compare === "upper" && f.upper !== null ? f.upper : f.value; }
  function crosses(v, f) { return f.threshold !== null && compared(v, f) >= f.threshold; }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  async function getJSON(url) {
    const resp = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await resp.json().catch(() => ({ error: "the server answered " + resp.status }));
    if (!resp.ok) throw new Error(body.error || "the server answered " + resp.status);
    return body;
  }
  function showError(msg) { const e = $("error"); e.hidden = !msg; e.textContent = msg || ""; }

  // -- application picker -------------------------------------------------------------------
  async function loadApps() {
    const { applications } = await getJSON("/api/applications");
    const nav = $("apps");
    clear(nav);
    for (const a of applications) {
      const dot = el("span", { class: "dot " + (a.last_origin ? (a.open_alerts ? "alert" : a.stale ? "stale" : "") : "none"),
                               title: (a.open_alerts ? a.open_alerts + " open alert(s)" : "no open alert") + (a.stale ? " · forecast stale" : "") });
      const b = el("button", { type: "button", "data-app": a.name, "aria-pressed": "false" }, [a.name, dot]);
      b.addEventListener("click", () => select(a.name));
      nav.append(b);
    }
    return applications.map((a) => a.name);
  }

  async function select(name) {
    current = name;
    history.replaceState(null, "", "#app=" + encodeURIComponent(name));
    for (const b of document.querySelectorAll("nav#apps button")) b.setAttribute("aria-pressed", String(b.dataset.app === name));
    try {
      const view = await getJSON("/api/app/" + encodeURIComponent(name) + "?hours=72");
      if (current !== name) return; // the user switched again meanwhile
      showError("");
      render(view);
    } catch (err) {
      showError("Could not load " + name + ": " + err.message);
    }
  }

  // -- rendering ----------------------------------------------------------------------------
  function render(v) {
    lastView = v;
    document.title = "artq · " + v.application;
    $("app-name").textContent = v.application + " · ";
    const fr = v.freshness || {};
    $("clock").textContent = "All times UTC" + (v.origin ? " · data up to " + dayHour(v.origin) + "–" + pad((new Date(v.origin).getUTCHours() + 1) % 24) + ":00" +
      " · " + age(fr.age_minutes) + " old" : "");
    $("stale").hidden = !fr.stale;
    $("stale-text").textContent = fr.stale ? fr.message + " (checked " + dayHour(fr.now) + " UTC)." : "";
    document.body.dataset.stale = String(Boolean(fr.stale));
    renderCards(v);
    renderChart(v);
    renderNext(v);
    renderAccuracy(v);
    renderAlerts(v);
    renderRuns(v);
    document.body.dataset.app = v.application; // lets tests wait for the switch
  }

  function renderCards(v) {
    const fc = v.forecast;
    const stale = Boolean(v.freshness && v.freshness.stale);
    $("peak-label").textContent = stale ? "Peak of the last forecast (stale)" : "Next 6 h peak forecast";
    if (fc.length) {
      const peak = fc.reduce((a, b) => (b.value > a.value ? b : a));
      const over = fc.some((f) => crosses(v, f));
      const near = fc.some((f) => f.threshold !== null && compared(v, f) >= 0.9 * f.threshold);
      setCard("card-peak", stale ? "warn" : over ? "bad" : near ? "warn" : "ok", ms(peak.value),
        hourRange(peak.target_hour) + " UTC (+" + peak.horizon + " h)" + (peak.threshold !== null ? " · threshold " + ms(peak.threshold) : ""));
    } else setCard("card-peak", "", "no forecast", "no cycle has produced a forecast yet");

    // the early-warning card is about forecast breaches only; other alert kinds are listed by kind below
    const open = v.alerts.filter((a) => a.status === "open" && a.kind === "forecast_breach");
    const others = v.alerts.filter((a) => a.status === "open" && a.kind !== "forecast_breach");
    const otherText = others.length ? " · also open: " + others.map((a) => a.kind_label).join(", ") : "";
    const crossing = fc.filter((f) => crosses(v, f));
    if (crossing.length) {
      const f = crossing[0];
      const since = open.length ? " · alert open since " + dayHour(open[0].opened_at) : "";
      const what = v.compare === "upper" ? "upper bound " : "forecast ";
      setCard("card-alert", "bad", "Breach expected",
        "first at " + hourRange(f.target_hour) + " UTC (+" + f.horizon + " h): " + what + ms(compared(v, f)) + " ≥ " + ms(f.threshold) + since + otherText);
    } else if (open.length) {
      setCard("card-alert", "warn", "Breach alert open, easing",
        "the latest forecasts are back under the threshold; the alert resolves once they and the actual stay clear" + otherText);
    } else if (others.length) {
      setCard("card-alert", "warn", others[0].kind_label, "no forecast crosses the threshold" + otherText.replace(" · also", " ·"));
    } else setCard("card-alert", "ok", "All clear", "no forecast crosses the threshold in the next 6 h");

    const acc = v.accuracy.find((r) => r.period === "24h" && r.horizon === 1);
    const val = v.validation && v.validation.horizons ? v.validation.horizons[0] : null;
    if (acc && acc.n) {
      $("acc-label").textContent = "Accuracy, last 24 h (1 h ahead)";
      const cov = acc.coverage === null ? "" : " · " + pct(acc.coverage) + " inside interval (target " + pct(acc.nominal_coverage) + ")";
      setCard("card-acc", "", "± " + ms(acc.mae), "MAE over " + acc.n + " h" + cov);
    } else if (val && val.mae !== null) {
      $("acc-label").textContent = "Validation accuracy (1 h ahead)";
      setCard("card-acc", "", "± " + ms(val.mae), "out-of-sample MAE at training, model " + v.validation.model_version +
        (val.coverage !== null ? " · " + pct(val.coverage) + " inside interval" : "") + " · live figures once forecasts have aged");
    } else setCard("card-acc", "", "–", "no actuals yet to compare with");

    const run = v.runs[0];
    if (stale) {
      setCard("card-run", "bad", "Stale", v.freshness.message);
    } else if (run) {
      const secs = [run.fetch_s, run.predict_s, run.refresh_s].filter((x) => x !== null).reduce((a, b) => a + b, 0);
      setCard("card-run", run.status === "succeeded" ? "ok" : run.status === "failed" ? "bad" : "warn", run.status,
        "origin " + dayHour(run.origin) + " UTC · " + secs.toFixed(1) + " s" + (run.error ? " · " + run.error : ""));
    } else setCard("card-run", "", "none yet", "no cycle recorded");
  }

  function renderChart(v) {
    const box = $("chart");
    const hours = new Map();
    const put = (iso, idx, val) => {
      const t = ts(iso);
      if (!hours.has(t)) hours.set(t, [null, null, null, null, null, null, null, null]);
      hours.get(t)[idx] = val;
    };
    for (const [iso, val] of v.actual) put(iso, 0, val);
    for (const [iso, f] of v.past_forecast) put(iso, 1, f);
    const fc = v.forecast;
    if (fc.length && v.origin) {
      const last = v.actual.find(([iso]) => iso === v.origin);
      if (last) { put(v.origin, 2, last[1]); put(v.origin, 3, last[1]); put(v.origin, 4, last[1]); } // join the lines
    }
    for (const f of fc) { put(f.target_hour, 2, f.value); put(f.target_hour, 3, f.lower); put(f.target_hour, 4, f.upper); }
    const xs = [...hours.keys()].sort((a, b) => a - b);
    // threshold across the chart when it is one value; otherwise only where it applies (the forecast hours)
    const ths = fc.map((f) => f.threshold).filter((t) => t !== null);
    const flat = ths.length && ths.every((t) => t === ths[0]);
    const b30 = fc.length && fc[0].bands["30d"] ? fc[0].bands["30d"] : null;
    const thAt = new Map(fc.map((f) => [ts(f.target_hour), f.threshold]));
    const cols = [xs];
    for (let i = 0; i < 5; i++) cols.push(xs.map((x) => hours.get(x)[i]));
    cols.push(xs.map((x) => (flat ? ths[0] : thAt.has(x) ? thAt.get(x) : null)));
    cols.push(xs.map(() => (b30 ? b30.p90 : null)));
    cols.push(xs.map(() => (b30 ? b30.p99 : null)));

    const key = $("chart-key");
    clear(key);
    for (const [cls, text] of [["k-actual", "actual"], ["k-fc", "forecast"], ["k-band", "interval"], ["k-past", "1 h-ahead forecast, past"],
                               ["k-th", "alert threshold"], ["k-pct", "p90 / p99 of 30 days"]]) key.append(el("span", { class: cls, text }));

    const nowX = v.origin ? ts(v.origin) + 3600 : null;
    const stale = Boolean(v.freshness && v.freshness.stale);
    const opts = {
      width: Math.max(320, box.clientWidth), height: 320,
      tzDate: (t) => uPlot.tzDate(new Date(t * 1000), "Etc/UTC"),
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.1, 1)] } },
      axes: [
        { stroke: "#6b7280", grid: { stroke: "#f3f4f6" }, ticks: { stroke: "#e5e7eb" }, size: 44, values: (u, splits) => splits.map(utcTick) },
        { stroke: "#6b7280", grid: { stroke: "#f3f4f6" }, ticks: { stroke: "#e5e7eb" }, size: 78,
          values: (u, vals) => vals.map((x) => Math.round(x).toLocaleString("en-US") + " ms") },
      ],
      series: [
        { label: "Time (UTC)" },
        { label: "Actual", stroke: "#1f2937", width: 2, spanGaps: false },
        { label: "1 h-ahead forecast (past)", stroke: "#93c5fd", width: 1.5, dash: [5, 4], spanGaps: true },
        { label: "Forecast", stroke: "#2563eb", width: 3, points: { show: true, size: 6, fill: "#2563eb" } },
        { label: "Lower", stroke: "rgba(0,0,0,0)", points: { show: false } },
        { label: "Upper", stroke: "rgba(0,0,0,0)", points: { show: false } },
        { label: "Threshold", stroke: "#dc2626", width: 2, dash: [8, 5], points: { show: false } },
        { label: "p90 30 d", stroke: "#9ca3af", width: 1, dash: [2, 4], points: { show: false } },
        { label: "p99 30 d", stroke: "#6b7280", width: 1, dash: [2, 4], points: { show: false } },
      ],
      bands: [{ series: [5, 4], fill: "rgba(37, 99, 235, 0.16)" }],
      hooks: {
        draw: [(u) => {
          if (nowX === null) return;
          const x = Math.round(u.valToPos(nowX, "x", true));
          const ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = "rgba(37, 99, 235, 0.05)";
          ctx.fillRect(x, u.bbox.top, u.bbox.left + u.bbox.width - x, u.bbox.height);
          ctx.strokeStyle = "#9ca3af"; ctx.setLineDash([3, 3]); ctx.lineWidth = 1;
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
          ctx.fillStyle = "#6b7280"; ctx.font = (12 * devicePixelRatio) + "px system-ui, sans-serif";
          ctx.fillText(stale ? "stale: forecast from data up to " + pad((new Date(v.origin).getUTCHours() + 1) % 24) + ":00 →" : "now → forecast",
                       x + 6 * devicePixelRatio, u.bbox.top + 14 * devicePixelRatio);
          ctx.restore();
        }],
      },
    };
    if (plot) plot.destroy();
    clear(box);
    plot = new uPlot(opts, cols, box);
  }

  const PERIOD_NAMES = [["7d", "7 d"], ["30d", "30 d"], ["hour_of_week", "same hour of week"]];

  function bullet(f, period) {
    const b = f.bands[period];
    const wrap = el("div", { class: "bullet", "data-period": period });
    if (!b || b.p99 === null) return el("span", { class: "pos", text: "no history yet" });
    const top = Math.max(b.p99, f.value || 0, f.threshold || 0) * 1.08;
    const pos = (x) => Math.min(100, (x / top) * 100) + "%";
    const segs = [["b60", 0, b.p60], ["b75", b.p60, b.p75], ["b90", b.p75, b.p90], ["b99", b.p90, b.p99]];
    for (const [cls, lo, hi] of segs) {
      const s = el("div", { class: "seg " + cls });
      s.style.left = pos(lo); s.style.width = "calc(" + pos(hi) + " - " + pos(lo) + ")";
      wrap.append(s);
    }
    if (f.threshold !== null) { const t = el("div", { class: "thr", title: "alert threshold " + ms(f.threshold) }); t.style.left = pos(f.threshold); wrap.append(t); }
    const m = el("div", { class: "mark", title: "forecast " + ms(f.value) }); m.style.left = pos(f.value); wrap.append(m);
    wrap.title = "p60 " + ms(b.p60) + " · p75 " + ms(b.p75) + " · p90 " + ms(b.p90) + " · p99 " + ms(b.p99) + " (" + b.n_hours + " h) — forecast " + (b.position || "");
    return wrap;
  }

  function bullets(f) {
    const box = el("div", { class: "bullets" });
    for (const [period, name] of PERIOD_NAMES) {
      const b = f.bands[period];
      box.append(el("span", { class: "per", text: name + (b && b.position ? " · " + b.position : "") }), bullet(f, period));
    }
    return box;
  }

  function renderNext(v) {
    $("rule").textContent = "Alert rule: " + v.rule;
    const body = $("next").tBodies[0];
    clear(body);
    $("compare-what").textContent = v.compare === "upper" ? "the interval's upper bound" : "the point forecast";
    if (!v.forecast.length) body.append(el("tr", {}, [el("td", { colspan: "6", text: "No forecast yet: run a cycle (artq run-cycle)." })]));
    for (const f of v.forecast) {
      const breach = crosses(v, f);
      const onUpper = v.compare === "upper" && f.upper !== null;
      // a driver that moves the forecast by less than half a millisecond says nothing
      const drivers = el("td", { class: "wrap" }, f.drivers.filter(([, c]) => Math.abs(c) >= 0.5).slice(0, 3).map(([name, c]) =>
        el("span", { class: "driver " + (c < 0 ? "down" : "up"), text: name + " " + (c < 0 ? "↓ " : "↑ ") + signedMs(c) })));
      const interval = el("td", { class: "num iv" }, f.lower === null ? ["–"] : [
        Math.round(f.lower).toLocaleString("en-US") + "–",
        el("span", { class: "upper" + (breach && onUpper ? " crossed" : ""), text: Math.round(f.upper).toLocaleString("en-US") })]);
      body.append(el("tr", { class: breach ? "breach" : "" }, [
        el("td", { text: hourRange(f.target_hour) + " (+" + f.horizon + " h)" }),
        el("td", { class: "num fc" + (breach && !onUpper ? " crossed" : ""), text: ms(f.value) }),
        interval,
        el("td", {}, [bullets(f)]),
        el("td", { class: "num", text: ms(f.threshold) }),
        drivers,
      ]));
    }
  }

  function renderAccuracy(v) {
    const body = $("accuracy").tBodies[0];
    clear(body);
    const by = {};
    for (const r of v.accuracy) by[r.period + ":" + r.horizon] = r;
    const maxMae = Math.max(1, ...v.accuracy.map((r) => r.mae || 0));
    for (let h = 1; h <= 6; h++) {
      const d = by["24h:" + h] || {}, w = by["7d:" + h] || {};
      const maeCell = (r) => {
        const bar = el("span", { class: "bar" }); bar.style.width = Math.round(((r.mae || 0) / maxMae) * 80) + "px";
        return el("td", { class: "num" }, [r.n ? ms(r.mae) : "–", bar]);
      };
      const cov = el("span", { class: "cov", title: "nominal " + pct(w.nominal_coverage) });
      const fill = el("span", { class: "fill" }); fill.style.width = Math.round((w.coverage || 0) * 100) + "%";
      const nom = el("span", { class: "nom" }); nom.style.left = Math.round((w.nominal_coverage || 0) * 100) + "%";
      cov.append(fill, nom);
      const val = (v.validation && v.validation.horizons[h - 1]) || {};
      body.append(el("tr", {}, [el("td", { text: "+" + h + " h" }), maeCell(d), maeCell(w),
        el("td", {}, w.n_interval !== 0 && w.coverage !== null && w.coverage !== undefined ? [cov, pct(w.coverage) + " · target " + pct(w.nominal_coverage)] : ["–"]),
        el("td", { class: "num val", text: ms(val.mae) }), el("td", { class: "num val", text: pct(val.coverage) })]));
    }
    const notes = [];
    if (v.validation) notes.push("Validation: out-of-sample errors measured at training (model " + v.validation.model_version + "), shown until live forecasts have aged.");
    if (v.in_sample && v.in_sample.count) notes.push(v.in_sample.count + " of " + v.in_sample.of + " forecasts of the last 7 days were of hours the model was trained on (in-sample); they are left out of the live figures.");
    $("acc-note").textContent = notes.join(" ");
  }

  function renderAlerts(v) {
    const list = $("alerts");
    clear(list);
    if (!v.alerts.length) list.append(el("li", { class: "empty", text: "No alerts raised yet." }));
    for (const a of v.alerts) {
      const when = "opened " + dayHour(a.opened_at) + " UTC" + (a.resolved_at ? " · resolved " + dayHour(a.resolved_at) + " UTC" : "") +
        (a.notified ? " · notified" : a.notify_error ? " · webhook failed: " + a.notify_error : "");
      list.append(el("li", { "data-kind": a.kind }, [el("span", { class: "kind", text: a.kind_label || a.kind }),
        el("span", { class: "pill " + a.status, text: a.status }), " ", a.message, el("div", { class: "when", text: when })]));
    }
  }

  function renderRuns(v) {
    const body = $("runs").tBodies[0];
    clear(body);
    const s = (x) => (x === null ? "–" : x.toFixed(2) + " s");
    for (const r of v.runs) {
      body.append(el("tr", {}, [
        el("td", { text: dayHour(r.origin) }), el("td", {}, [el("span", { class: "pill " + r.status, text: r.status })]),
        el("td", { text: r.trigger }), el("td", { class: "num", text: s(r.fetch_s) }), el("td", { class: "num", text: s(r.predict_s) }),
        el("td", { class: "num", text: s(r.refresh_s) }), el("td", { text: r.finished_at ? dayHour(r.finished_at) : "–" }),
        el("td", { text: r.model_version || "–" }), el("td", { class: "err", text: r.error || "", title: r.error || "" }),
      ]));
    }
  }

  // -- start --------------------------------------------------------------------------------
  async function start() {
    try {
      const names = await loadApps();
      const fromHash = decodeURIComponent((location.hash.match(/app=([^&]*)/) || [])[1] || "");
      if (names.length) await select(names.includes(fromHash) ? fromHash : names[0]);
    } catch (err) {
      showError("Could not reach the artq API: " + err.message);
    }
  }
  window.addEventListener("resize", () => { if (plot) plot.setSize({ width: Math.max(320, $("chart").clientWidth), height: 320 }); });
  setInterval(() => { if (current) loadApps().then(() => select(current)).catch(() => {}); }, REFRESH_MS);
  start();
})();
