/* chronik console: a small single-page app over the HTTP API. No build step, no dependencies.
 *
 * Pages are functions of (element, params) that draw into <main> and register cleanups (timers,
 * live subscriptions) with onLeave(). Applications add pages from /static/apps/<name>.js by calling
 * chronik.registerApp(name, render): that is the extension point the video and bank pages use.
 */
"use strict";

(() => {
  const KEY_STORAGE = "chronik.apiKey";
  const main = document.getElementById("main");
  let leaving = [];
  const appRenderers = {};
  const appScripts = {};

  // -- small helpers -------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  /* Fields whose value is null are left out of the view and named under it ("no value: ..."):
   * a reader sees which fields are empty without a raw `null` in the middle of the data. */
  function withoutNulls(value, path, empty) {
    if (Array.isArray(value)) return value.map((item, i) => withoutNulls(item, `${path}[${i}]`, empty));
    if (value === null || typeof value !== "object") return value;
    const kept = {};
    for (const [key, item] of Object.entries(value)) {
      if (item === null) empty.push(path ? `${path}.${key}` : key);
      else kept[key] = withoutNulls(item, path ? `${path}.${key}` : key, empty);
    }
    return kept;
  }

  function jsonView(value, testid) {
    const empty = [];
    const shown = withoutNulls(value, "", empty);
    const pre = h("pre", { class: "json", "data-testid": testid });
    const text = escapeHtml(JSON.stringify(shown, null, 2) ?? "–");
    pre.innerHTML = text.replace(
      /(&quot;(?:[^&]|&(?!quot;))*?&quot;)(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g,
      (match, str, colon, bool, num) => {
        if (str) return colon ? `<span class="k">${str}</span>${colon}` : `<span class="s">${str}</span>`;
        if (bool) return `<span class="b">${bool}</span>`;
        return `<span class="n">${num}</span>`;
      },
    );
    if (!empty.length) return pre;
    return h("div", {}, pre, h("div", { class: "muted small-note no-value", "data-testid": testid && `${testid}-empty` },
      `no value: ${empty.join(", ")}`));
  }

  /* One line of an event's data for a table cell: `sku: tea · quantity: 2`, an empty value as –. */
  function dataLine(data, max = 120) {
    const show = (v) => (v === null || v === undefined ? "–" : typeof v === "object" ? JSON.stringify(v, (k, x) => (x === null ? "–" : x)) : String(v));
    const text = Object.entries(data || {}).map(([key, value]) => `${key}: ${show(value)}`).join(" · ") || "–";
    return text.length > max ? `${text.slice(0, max)}…` : text;
  }

  function fmtTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
  }

  function ago(iso) {
    const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  function until(iso) {
    const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
    return seconds >= 0 ? `in ${seconds} s` : `${-seconds} s ago`;
  }

  /* Money, the one way it is written everywhere (the CLI and the bank's messages too): €1,234.56. */
  const EUROS = new Intl.NumberFormat("en", { style: "currency", currency: "EUR" });
  function euros(cents) {
    return cents === null || cents === undefined ? "–" : EUROS.format(cents / 100);
  }

  function toast(message) {
    let el = document.querySelector(".toast");
    if (!el) { el = h("div", { class: "toast", role: "status" }); document.body.append(el); }
    el.textContent = message;
    el.classList.add("show");
    clearTimeout(el._timer);
    el._timer = setTimeout(() => el.classList.remove("show"), 2600);
  }

  /* A line chart as inline SVG: points are [x, y] numbers; the bank's balance-over-time uses it too.
   * `dots` marks each point (with a tooltip from `titles`), `xLabels` writes [left, right] under the axis.
   * On a narrow screen the drawing is narrower, so that its text stays readable once scaled down. */
  function lineChart(points, { width = window.innerWidth < 760 ? 440 : 1100, height = 160, yLabel = "", testid, dots = false, titles = [], xLabels = null, yFormat = (v) => String(Math.round(v)), padLeft = 40 } = {}) {
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("class", "spark");
    svg.setAttribute("role", "img");
    if (testid) svg.setAttribute("data-testid", testid);
    const pad = { left: padLeft, right: 8, top: 10, bottom: 18 };
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const [x0, x1] = [Math.min(...xs, 0), Math.max(...xs, 1)];
    const [y0, y1] = [Math.min(...ys, 0), Math.max(...ys, 1)];
    const sx = (x) => pad.left + ((x - x0) / (x1 - x0 || 1)) * (width - pad.left - pad.right);
    const sy = (y) => height - pad.bottom - ((y - y0) / (y1 - y0 || 1)) * (height - pad.top - pad.bottom);
    const line = (x1_, y1_, x2_, y2_, cls) => {
      const el = document.createElementNS(svgNS, "line");
      for (const [k, v] of Object.entries({ x1: x1_, y1: y1_, x2: x2_, y2: y2_, class: cls })) el.setAttribute(k, v);
      svg.append(el);
    };
    const text = (x, y, value, cls) => {
      const el = document.createElementNS(svgNS, "text");
      el.setAttribute("x", x); el.setAttribute("y", y); el.setAttribute("class", cls);
      el.textContent = value;
      svg.append(el);
    };
    line(pad.left, sy(y0), width - pad.right, sy(y0), "axis");
    line(pad.left, sy(y1), width - pad.right, sy(y1), "grid");
    text(pad.left - 6, sy(y1) + 4, yFormat(y1), "tick");
    text(pad.left - 6, sy(y0) + 4, yFormat(y0), "tick");
    if (xLabels) {
      text(pad.left, height - 3, xLabels[0], "label");
      text(width - pad.right, height - 3, xLabels[1], "tick");
    }
    if (yLabel) text(pad.left + 4, pad.top + 2, yLabel, "label");
    if (points.length) {
      const path = document.createElementNS(svgNS, "polyline");
      path.setAttribute("points", points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "));
      path.setAttribute("class", "series");
      svg.append(path);
    }
    if (dots) {
      points.forEach(([x, y], index) => {
        const dot = document.createElementNS(svgNS, "circle");
        dot.setAttribute("cx", sx(x).toFixed(1)); dot.setAttribute("cy", sy(y).toFixed(1));
        dot.setAttribute("r", "3.5"); dot.setAttribute("class", "point");
        if (titles[index]) {
          const title = document.createElementNS(svgNS, "title");
          title.textContent = titles[index];
          dot.append(title);
        }
        svg.append(dot);
      });
    }
    svg.dataset.points = String(points.length);
    return svg;
  }

  function onLeave(fn) { leaving.push(fn); }

  function every(ms, fn) {
    const timer = setInterval(fn, ms);
    onLeave(() => clearInterval(timer));
  }

  function errorBox(error) {
    return h("div", { class: "error-box", role: "alert" }, h("b", { text: error.title || "Error" }), " ",
      error.detail || error.message || String(error));
  }

  function pageHead(title, sub, ...actions) {
    return h("div", { class: "page-head" },
      h("div", {}, h("h1", { text: title }), sub ? h("div", { class: "sub", text: sub }) : null),
      actions.length ? h("div", { class: "actions" }, actions) : null);
  }

  function streamLink(stream) {
    return h("a", { href: `#/streams/${encodeURIComponent(stream)}`, class: "mono" }, stream);
  }

  // -- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.title = problem.title;
      this.detail = problem.detail;
      this.problem = problem;
    }
  }

  function authHeaders() {
    const key = localStorage.getItem(KEY_STORAGE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json", ...authHeaders(), ...(options.headers || {}) };
    let body = options.body;
    if (body !== undefined && typeof body !== "string" && !(body instanceof FormData)) {
      body = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, { ...options, headers, body });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
    if (!response.ok) {
      if (response.status === 401) askForKey();
      throw new ApiError(response.status, data || {});
    }
    return data;
  }

  /* A file from the API (a thumbnail, a video) as an object URL: <img src> could not send the API key. */
  async function blobUrl(path) {
    const response = await fetch(path, { headers: authHeaders() });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      if (response.status === 401) askForKey();
      throw new ApiError(response.status, problem);
    }
    return URL.createObjectURL(await response.blob());
  }

  /* Server-Sent Events over fetch (EventSource cannot send an Authorization header). */
  async function subscribe(path, onEvent, signal) {
    const response = await fetch(path, { headers: { Accept: "text/event-stream", ...authHeaders() }, signal });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      if (response.status === 401) askForKey();
      throw new ApiError(response.status, problem);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message", id = null, data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("id: ")) id = line.slice(4);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) onEvent(name, id, JSON.parse(data));
      }
    }
  }

  // -- API key dialog ---------------------------------------------------------------------------

  const dialog = document.getElementById("key-dialog");
  function askForKey() {
    if (!dialog.open) {
      document.getElementById("key-input").value = localStorage.getItem(KEY_STORAGE) || "";
      dialog.showModal();
    }
  }
  document.getElementById("key-button").addEventListener("click", askForKey);
  dialog.addEventListener("close", () => {
    const input = document.getElementById("key-input");
    if (dialog.returnValue === "save" && input.value.trim()) localStorage.setItem(KEY_STORAGE, input.value.trim());
    if (dialog.returnValue === "clear") localStorage.removeItem(KEY_STORAGE);
    if (dialog.returnValue) { loadApps(); route(); }
  });

  // -- status bar ---------------------------------------------------------------------------------

  async function pollHead() {
    const dot = document.getElementById("live-dot");
    try {
      const ready = await fetch("/readyz", { headers: authHeaders() }).then((r) => r.json());
      document.getElementById("head-position").textContent =
        ready.head_position === undefined ? "connected" : `log head: ${ready.head_position}`;
      dot.className = "dot on";
    } catch {
      dot.className = "dot off";
      document.getElementById("head-position").textContent = "server unreachable";
    }
  }
  setInterval(pollHead, 2000);

  // -- pages: streams -----------------------------------------------------------------------------

  async function streamsPage(el, params) {
    const prefix = params.get("q") || "";
    const search = h("input", { type: "search", placeholder: "Search streams by name prefix, e.g. cart-",
      value: prefix, "aria-label": "search streams", "data-testid": "stream-search" });
    const results = h("div", {}, h("div", { class: "empty", text: "Loading…" }));
    el.append(pageHead("Streams", "Every stream in the log. Open one to see its events and travel through its history."),
      h("div", { class: "searchbar" }, search), results);
    let timer = null;
    const load = async () => {
      try {
        const { streams } = await api(`/api/streams?limit=200&prefix=${encodeURIComponent(search.value)}`);
        results.replaceChildren(streams.length ? streamTable(streams)
          : h("div", { class: "empty", text: search.value ? `No stream starts with “${search.value}”.` : "The log is empty." }));
      } catch (error) { results.replaceChildren(errorBox(error)); }
    };
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        history.replaceState(null, "", `#/streams${search.value ? `?q=${encodeURIComponent(search.value)}` : ""}`);
        load();
      }, 200);
    });
    await load();
    every(3000, load);  // the list follows the log: new streams and versions appear on their own
    search.focus();
  }

  function streamTable(streams) {
    const rows = streams.map((s) => h("tr", { class: "clickable", "data-stream": s.stream,
      onclick: () => { location.hash = `#/streams/${encodeURIComponent(s.stream)}`; } },
    h("td", {}, streamLink(s.stream)),
    h("td", {}, h("span", { class: "badge", text: s.category })),
    h("td", { class: "num", text: s.version }),
    h("td", { class: "num", text: s.event_count }),
    h("td", { class: "muted", title: fmtTime(s.last_recorded_at), text: ago(s.last_recorded_at) })));
    return h("div", { class: "table-wrap" }, h("table", { "data-testid": "stream-table" },
      h("thead", {}, h("tr", {}, h("th", { text: "Stream" }), h("th", { text: "Category" }),
        h("th", { class: "num", text: "Version" }), h("th", { class: "num", text: "Events" }), h("th", { text: "Last event" }))),
      h("tbody", {}, rows)));
  }

  // -- pages: one stream, with time travel --------------------------------------------------------

  async function streamPage(el, params, stream) {
    el.append(pageHead(stream, "Loading…"));
    let page;
    try {
      page = await api(`/api/streams/${encodeURIComponent(stream)}/events?limit=1000`);
    } catch (error) {
      el.replaceChildren(pageHead(stream, error.status === 404 ? "No such stream" : "Could not read this stream",
        h("a", { href: "#/streams" }, "← all streams")), errorBox(error));
      return;
    }
    const events = page.events;
    el.replaceChildren(pageHead(stream, `${events.length} event${events.length === 1 ? "" : "s"} · version ${page.version}`,
      h("a", { href: "#/streams" }, "← all streams")));
    if (events.length < page.version + 1) {
      el.append(h("div", { class: "note", text: `Showing the first ${events.length} of ${page.version + 1} events.` }));
    }

    const items = events.map((event) => {
      const actor = event.metadata.actor;
      return h("li", { "data-version": event.stream_version },
        h("details", { class: "event-card" },
          h("summary", {},
            h("span", { class: "badge info", text: `v${event.stream_version}` }),
            h("span", { class: "type", text: event.type }),
            actor ? h("span", { class: "muted", text: `by ${actor}` }) : null,
            h("span", { class: "when", title: `position ${event.global_position}`, text: fmtTime(event.recorded_at) })),
          h("div", { class: "event-body" },
            h("div", { class: "kv" },
              h("dt", { text: "position" }), h("dd", { class: "mono", text: event.global_position }),
              h("dt", { text: "event id" }), h("dd", { class: "mono", text: event.event_id }),
              h("dt", { text: "recorded" }), h("dd", { text: fmtTime(event.recorded_at) }),
              h("dt", { text: "occurred" }), h("dd", { text: fmtTime(event.occurred_at) }),
              h("dt", { text: "schema" }), h("dd", { text: `v${event.schema_version}` })),
            h("div", { class: "label", text: "data" }), jsonView(event.data, "event-data"),
            h("div", { class: "label", text: "metadata" }), jsonView(event.metadata, "event-metadata"))));
    });
    const timeline = h("ul", { class: "timeline", "data-testid": "timeline" }, items);

    const last = events.length - 1;
    const slider = h("input", { type: "range", min: 0, max: Math.max(last, 0), value: Math.max(last, 0), step: 1,
      "aria-label": "time travel: stream version", "data-testid": "travel-slider", disabled: events.length < 2 });
    const mode = h("select", { "aria-label": "time travel by", "data-testid": "travel-mode" },
      h("option", { value: "version", text: "by version" }),
      h("option", { value: "as_of", text: "by recorded time" }),
      h("option", { value: "occurred_as_of", text: "by business time" }));
    const label = h("div", { class: "travel-label", "data-testid": "travel-label" });
    const stateBox = h("div", { "data-testid": "travel-state-box" });
    const ticks = h("div", { class: "ticks" }, h("span", { text: "v0" }), h("span", { text: `v${Math.max(last, 0)}` }));
    const travel = h("div", { class: "panel travel" },
      h("h2", {}, "Time travel"),
      h("div", { class: "row" }, mode, h("span", { class: "muted", text: "Drag to see the state at any point." })),
      slider, ticks, label, stateBox);

    let request = 0;
    let debounce = null;
    const show = () => {
      const index = Number(slider.value);
      const event = events[index];
      for (const li of items) {
        const version = Number(li.dataset.version);
        li.classList.toggle("future", version > event.stream_version);
        li.classList.toggle("current", version === event.stream_version);
      }
      const when = mode.value === "occurred_as_of" ? event.occurred_at : event.recorded_at;
      label.textContent = mode.value === "version"
        ? `As of version ${event.stream_version} (${event.type})`
        : `As of ${fmtTime(when)} ${mode.value === "as_of" ? "(recorded)" : "(business time)"}`;
      clearTimeout(debounce);
      debounce = setTimeout(async () => {
        const mine = ++request;
        const query = mode.value === "version" ? `version=${event.stream_version}` : `${mode.value}=${encodeURIComponent(when)}`;
        try {
          const state = await api(`/api/streams/${encodeURIComponent(stream)}/state?${query}`);
          if (mine !== request) return;
          stateBox.replaceChildren(
            h("div", { class: "muted", text: `${state.aggregate} at version ${state.version}` }),
            jsonView(state.state, "travel-state"));
        } catch (error) {
          if (mine !== request) return;
          if (error.status === 404 && error.problem.category) {
            stateBox.replaceChildren(h("div", { class: "note", "data-testid": "travel-no-aggregate" },
              `No aggregate is registered for the category “${error.problem.category}”, so there is no state to ` +
              "hydrate; the timeline shows every event."));
          } else stateBox.replaceChildren(errorBox(error));
        }
      }, 90);
    };
    slider.addEventListener("input", show);
    mode.addEventListener("change", show);
    const fresh = h("div", { "data-testid": "stream-updates" });
    el.append(fresh, h("div", { class: "grid-2" },
      h("div", { class: "panel" }, h("h2", {}, "Events"), timeline),
      travel));
    if (events.length) show();
    // Tell the reader when the stream grows; reloading is their choice (the slider stays put).
    every(2500, async () => {
      try {
        const latest = await api(`/api/streams/${encodeURIComponent(stream)}/events?backwards=true&limit=1`);
        const added = latest.version - page.version;
        if (added > 0 && !fresh.childElementCount) {
          fresh.append(h("div", { class: "note" }, `${added} new event${added === 1 ? "" : "s"} in this stream. `,
            h("a", { href: "#", onclick: (e) => { e.preventDefault(); route(); } }, "Show them")));
        }
      } catch { /* the next round tries again */ }
    });
  }

  // -- pages: live tail -----------------------------------------------------------------------------

  async function livePage(el) {
    const body = h("tbody", {});
    const counter = h("span", { class: "badge info", "data-testid": "tail-count", text: "0 events" });
    const status = h("span", { class: "badge", "data-testid": "tail-status", text: "connecting…" });
    const category = h("input", { type: "text", placeholder: "category filter, e.g. cart", "aria-label": "category filter" });
    const pause = h("button", { type: "button", class: "ghost", "data-testid": "tail-pause" }, "Pause");
    const rateBox = h("div", { class: "panel" });
    el.append(pageHead("Live tail", "The whole log as it is written, newest first (Server-Sent Events)."),
      rateBox,
      h("div", { class: "tail-controls" }, category, pause, status, counter),
      h("div", { class: "table-wrap" }, h("table", { id: "tail-table", "data-testid": "tail-table" },
        h("thead", {}, h("tr", {}, h("th", { class: "num", text: "Position" }), h("th", { text: "Stream" }),
          h("th", { text: "Type" }), h("th", { text: "Data" }), h("th", { text: "Recorded" }))), body)));
    let controller = null;
    let count = 0;
    let nextPosition = null;
    let paused = false;

    // Events per second over the last minute, by the time the store recorded them.
    const perSecond = new Map();
    const drawRate = () => {
      const now = Math.floor(Date.now() / 1000);
      const points = [];
      for (let t = now - 59; t <= now; t += 1) points.push([t - now, perSecond.get(t) || 0]);
      for (const t of perSecond.keys()) if (t < now - 60) perSecond.delete(t);
      rateBox.replaceChildren(h("h3", { text: "events per second, last minute" }),
        lineChart(points, { height: 90, testid: "tail-rate" }));
    };
    drawRate();
    every(1000, drawRate);

    const add = (event) => {
      const second = Math.floor(new Date(event.recorded_at).getTime() / 1000);
      if (second >= Math.floor(Date.now() / 1000) - 60) perSecond.set(second, (perSecond.get(second) || 0) + 1);
      count += 1;
      counter.textContent = `${count} event${count === 1 ? "" : "s"}`;
      const data = dataLine(event.data);
      body.prepend(h("tr", { "data-position": event.global_position },
        h("td", { class: "num mono", text: event.global_position }),
        h("td", {}, streamLink(event.stream)),
        h("td", {}, h("b", { text: event.type })),
        h("td", { class: "mono muted data", title: data, text: data }),
        h("td", { class: "muted nowrap", text: fmtTime(event.recorded_at) })));
      while (body.children.length > 200) body.lastChild.remove();
    };

    const connect = async () => {
      controller = new AbortController();
      if (nextPosition === null) {
        const ready = await fetch("/readyz", { headers: authHeaders() }).then((r) => r.json()).catch(() => ({}));
        nextPosition = Math.max(1, (ready.head_position || 0) - 24);
      }
      const filter = category.value.trim() ? `&category=${encodeURIComponent(category.value.trim())}` : "";
      status.textContent = "live";
      status.className = "badge ok";
      try {
        await subscribe(`/api/log/subscribe?from_position=${nextPosition}&timeout=120${filter}`, (name, id, data) => {
          if (name === "message") { add(data); nextPosition = data.global_position + 1; }
          if (name === "end") nextPosition = data.next_position;
        }, controller.signal);
        if (!paused && !controller.signal.aborted) setTimeout(connect, 200);  // the server ended it: resume
      } catch (error) {
        if (controller.signal.aborted) return;
        status.textContent = error.title ? `error: ${error.title}` : "disconnected, retrying…";
        status.className = "badge bad";
        setTimeout(() => { if (!paused && !controller.signal.aborted) connect(); }, 2000);
      }
    };
    pause.addEventListener("click", () => {
      paused = !paused;
      pause.textContent = paused ? "Resume" : "Pause";
      if (paused) { controller?.abort(); status.textContent = "paused"; status.className = "badge warn"; } else connect();
    });
    let filterTimer = null;
    category.addEventListener("input", () => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(() => {
        controller?.abort(); body.replaceChildren(); count = 0; nextPosition = null;
        if (!paused) connect();
      }, 400);
    });
    onLeave(() => { paused = true; controller?.abort(); });
    connect();
  }

  // -- pages: consumer groups ------------------------------------------------------------------------

  async function groupsPage(el) {
    const list = h("div", {}, h("div", { class: "empty", text: "Loading…" }));
    el.append(pageHead("Consumer groups", "Members share a group's partitions; each stream stays in order. Failed events are parked."), list);
    const load = async () => {
      try {
        const { groups } = await api("/api/groups");
        list.replaceChildren(groups.length ? h("div", { class: "grid-cards", "data-testid": "group-cards" }, groups.map((g) =>
          h("a", { class: "panel group-card", href: `#/groups/${encodeURIComponent(g.name)}`, "data-group": g.name },
            h("h2", {}, g.name),
            h("div", { class: "stats" },
              h("div", { class: "stat" }, h("b", { text: g.lag }), h("span", { text: "lag" })),
              h("div", { class: "stat" }, h("b", { text: g.parked }), h("span", { text: "parked" })),
              h("div", { class: "stat" }, h("b", { text: g.members }), h("span", { text: "members" })),
              h("div", { class: "stat" }, h("b", { text: g.partitions }), h("span", { text: "partitions" }))),
            h("div", {}, g.parked ? h("span", { class: "badge warn", text: `${g.parked} parked` }) : h("span", { class: "badge ok", text: "healthy" }),
              " ", g.unowned.length ? h("span", { class: "badge bad", text: `${g.unowned.length} unowned` }) : null,
              " ", h("span", { class: "muted", text: g.categories.length ? `categories: ${g.categories.join(", ")}` : "all categories" })))))
          : h("div", { class: "empty", text: "No consumer group yet. Start one with `chronik worker GROUP --handler module:function`." }));
      } catch (error) { list.replaceChildren(errorBox(error)); }
    };
    await load();
    every(2500, load);
  }

  async function groupPage(el, params, group) {
    el.append(pageHead(group, "Consumer group", h("a", { href: "#/groups" }, "← all groups")));
    const body = h("div", {});
    el.append(body);
    const load = async () => {
      let status, parked;
      try {
        [status, { parked }] = await Promise.all([
          api(`/api/groups/${encodeURIComponent(group)}`),
          api(`/api/groups/${encodeURIComponent(group)}/parked`)]);
      } catch (error) { body.replaceChildren(errorBox(error)); return; }
      const partitions = h("table", { "data-testid": "partition-table" },
        h("thead", {}, h("tr", {}, ["Partition", "Owner", "Epoch", "Lease expires", "Checkpoint", "Lag", "Parked"].map((t, i) =>
          h("th", { class: i === 1 || i === 3 ? "" : "num", text: t })))),
        h("tbody", {}, status.partitions.map((p) => h("tr", {},
          h("td", { class: "num", text: p.partition }),
          h("td", { class: "nowrap" }, p.owner ? h("span", { class: "mono", text: p.owner }) : h("span", { class: "badge bad", text: "unowned" })),
          h("td", { class: "num", text: p.epoch }),
          h("td", { class: "muted nowrap", title: fmtTime(p.lease_expires_at), text: p.owner ? until(p.lease_expires_at) : "–" }),
          h("td", { class: "num", text: p.checkpoint }),
          h("td", { class: "num" }, p.lag ? h("span", { class: "badge warn", text: p.lag }) : "0"),
          h("td", { class: "num" }, p.parked ? h("span", { class: "badge bad", text: p.parked }) : "0")))));
      const replay = async (payload, what) => {
        try {
          const result = await api(`/api/groups/${encodeURIComponent(group)}/parked/replay`, { method: "POST", body: payload });
          toast(result.failed.length ? `${what}: ${result.replayed.length} replayed, ${result.failed.length} failed again`
            : `${what}: ${result.replayed.length} replayed`);
        } catch (error) { toast(error.detail || error.message); }
        load();
      };
      const discard = async (id) => {
        if (!confirm(`Discard parked event ${id}? Its effects will never be applied.`)) return;
        try { await api(`/api/groups/${encodeURIComponent(group)}/parked/discard`, { method: "POST", body: { ids: [id] } }); }
        catch (error) { toast(error.detail || error.message); }
        load();
      };
      const parkedTable = parked.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "parked-table" },
        h("thead", {}, h("tr", {}, ["#", "Stream", "Position", "Attempts", "Parked at", "Error", ""].map((t) => h("th", { text: t })))),
        h("tbody", {}, parked.map((p) => h("tr", { "data-parked": p.id },
          h("td", { class: "num", text: p.id }),
          h("td", {}, streamLink(p.stream)),
          h("td", { class: "num", text: p.global_position }),
          h("td", { class: "num", text: p.attempts }),
          h("td", { class: "muted nowrap", text: fmtTime(p.parked_at) }),
          h("td", { class: "mono muted" }, p.blocked_by ? `waits behind #${p.blocked_by}` : p.error),
          h("td", { class: "nowrap" }, h("div", { class: "inline-form nowrap" },
            h("button", { type: "button", class: "small", disabled: !status.replayable || !!p.blocked_by,
              onclick: () => replay({ parked_id: p.id }, `#${p.id}`) }, "Replay"),
            h("button", { type: "button", class: "small danger", onclick: () => discard(p.id) }, "Discard"))))))))
        : h("div", { class: "empty", text: "Nothing parked." });
      const members = status.members.length ? h("ul", {}, status.members.map((m) =>
        h("li", {}, h("span", { class: "mono", text: m.member }), h("span", { class: "muted", text: ` · partitions ${m.partitions.join(", ") || "none"}` }))))
        : h("div", { class: "muted", text: "No live member." });
      body.replaceChildren(
        h("div", { class: "stats" },
          h("div", { class: "stat" }, h("b", { "data-testid": "group-lag", text: status.total_lag }), h("span", { text: "lag (events)" })),
          h("div", { class: "stat" }, h("b", { "data-testid": "group-parked", text: status.parked }), h("span", { text: "parked" })),
          h("div", { class: "stat" }, h("b", { text: status.members.length }), h("span", { text: "members" })),
          h("div", { class: "stat" }, h("b", { text: status.head_position }), h("span", { text: "log head" }))),
        h("div", { class: "grid-2 wide-left" },
          h("div", { class: "panel" }, h("h2", {}, "Partitions"), h("div", { class: "table-wrap" }, partitions)),
          h("div", { class: "panel" }, h("h2", {}, "Members"), members)),
        h("div", { class: "panel" },
          h("div", { class: "page-head" }, h("h2", {}, `Parked events (${parked.length})`),
            h("div", { class: "actions" }, h("button", { type: "button", class: "small", "data-testid": "replay-all",
              disabled: !parked.length || !status.replayable, onclick: () => replay({}, "all") }, "Replay all"))),
          status.replayable ? null : h("div", { class: "note", text: "This server does not run this group's handler: replay with `chronik groups replay-parked`." }),
          parkedTable));
    };
    await load();
    every(2500, load);
  }

  // -- pages: projections ------------------------------------------------------------------------------

  async function projectionsPage(el) {
    const list = h("div", {}, h("div", { class: "empty", text: "Loading…" }));
    const rows = h("div", {});
    el.append(pageHead("Projections", "Read models kept from the log. A rebuild fills a new set of tables while the live set serves, then swaps them."), list, rows);
    const showRows = async (projection, table) => {
      try {
        const data = await api(`/api/projections/${projection}/tables/${table}?limit=50`);
        rows.replaceChildren(h("div", { class: "panel" },
          h("h2", {}, `${projection} · ${table} (set ${data.live_version}, first ${data.rows.length} rows)`),
          h("div", { class: "table-wrap" }, h("table", { "data-testid": "projection-rows" },
            h("thead", {}, h("tr", {}, data.columns.map((c) => h("th", { text: c })))),
            h("tbody", {}, data.rows.map((r) => h("tr", {}, r.map((v) => h("td", { class: "mono", text: v === null ? "–" : v })))))))));
      } catch (error) { rows.replaceChildren(errorBox(error)); }
    };
    const load = async () => {
      let projections;
      try { ({ projections } = await api("/api/projections")); } catch (error) { list.replaceChildren(errorBox(error)); return; }
      if (!projections.length) {
        list.replaceChildren(h("div", { class: "empty", text: "No projection is registered (projections need a SQL store)." }));
        return;
      }
      const rebuild = async (name) => {
        try { await api(`/api/projections/${name}/rebuild`, { method: "POST" }); toast(`rebuilding ${name}…`); }
        catch (error) { toast(error.detail || error.message); }
        load();
      };
      const explained = {
        "Live tables": "Which set of tables answers reads. A rebuild fills a new set beside the live one, then swaps it in, so this counts up with every rebuild.",
        Code: "The version the projection's code declares. When the code's version is not the one the live tables were built with, the status asks for a rebuild.",
      };
      list.replaceChildren(h("div", { class: "table-wrap" }, h("table", { "data-testid": "projection-table" },
        h("thead", {}, h("tr", {}, ["Projection", "Live tables", "Code", "Position", "Lag", "Status", "Tables", ""].map((t) =>
          h("th", { text: t, title: explained[t], class: explained[t] ? "explained" : null })))),
        h("tbody", {}, projections.map((p) => {
          const lagBar = h("div", { class: `bar${p.lag ? " warn" : ""}` }, h("span", {}));
          lagBar.firstChild.style.width = `${p.head_position ? Math.max(2, 100 - (100 * (p.lag || 0)) / p.head_position) : 100}%`;
          let statusCell;
          if (p.building) {
            const bar = h("div", { class: "bar", "data-testid": "rebuild-progress" }, h("span", {}));
            bar.firstChild.style.width = `${Math.round(p.building.progress * 100)}%`;
            statusCell = h("div", {}, h("span", { class: "badge info", text: `building set ${p.building.version} · ${Math.round(p.building.progress * 100)}%` }), bar);
          } else if (p.rebuild && p.rebuild.state === "running") statusCell = h("span", { class: "badge info", text: "rebuild starting…" });
          else if (p.rebuild && p.rebuild.state === "failed") statusCell = h("span", { class: "badge bad", title: p.rebuild.error, text: "rebuild failed" });
          else if (p.needs_rebuild) statusCell = h("span", { class: "badge warn", text: "code changed: rebuild" });
          else if (!p.built) statusCell = h("span", { class: "badge", text: "not built" });
          else if (p.rebuild && p.rebuild.state === "done") statusCell = h("span", { class: "badge ok", "data-testid": "rebuild-done", text: `rebuilt → set ${p.rebuild.result.new_version}` });
          else statusCell = h("span", { class: p.lag ? "badge warn" : "badge ok", text: p.lag ? "catching up" : "current" });
          return h("tr", { "data-projection": p.name },
            h("td", {}, h("b", { text: p.name })),
            h("td", { "data-testid": "live-set", title: p.live_version ? `set ${p.live_version}, built by code v${p.built_by_code_version}` : "not built yet",
              text: p.live_version ? `set ${p.live_version}` : "–" }),
            h("td", { title: explained.Code, text: p.code_version ? `v${p.code_version}` : "–" }),
            h("td", { class: "num", text: p.position ?? "–" }),
            h("td", {}, h("div", { class: "inline-form" }, h("span", { class: "num", text: p.lag ?? "–" }), lagBar)),
            h("td", {}, statusCell),
            h("td", {}, p.tables.map((t) => h("button", { type: "button", class: "small ghost", onclick: () => showRows(p.name, t) }, t))),
            h("td", {}, h("button", { type: "button", class: "small", "data-testid": `rebuild-${p.name}`,
              disabled: !!p.building || (p.rebuild && p.rebuild.state === "running"), onclick: () => rebuild(p.name) }, "Rebuild")));
        })))), h("div", { class: "muted small-note legend", "data-testid": "projection-legend" },
        "Live tables: the set of tables that answers reads; a rebuild fills a new set, then swaps it in, so the number counts rebuilds. ",
        "Code: the version the projection's code declares; when it changes, the status asks for a rebuild."));
    };
    await load();
    every(1000, load);
  }

  // -- pages: API reference (from the OpenAPI schema; Swagger UI would need a CDN) ------------------------

  async function apiPage(el) {
    let schema;
    try { schema = await api("/api/openapi.json"); } catch (error) { el.append(errorBox(error)); return; }
    el.append(pageHead("API reference", `${schema.info.title} ${schema.info.version} · the schema itself: /api/openapi.json`,
      h("a", { href: "/api/openapi.json", target: "_blank", rel: "noopener" }, "openapi.json")));
    const intro = h("div", { class: "panel" });
    for (const paragraph of schema.info.description.split("\n\n")) intro.append(h("p", { text: paragraph.replace(/\*\*/g, "").replace(/`/g, "") }));
    el.append(intro);
    const byTag = new Map();
    for (const [path, operations] of Object.entries(schema.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const tag = (operation.tags || ["other"])[0];
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push({ path, method, operation });
      }
    }
    for (const [tag, operations] of byTag) {
      el.append(h("div", { class: "panel" }, h("h2", {}, tag), h("div", { class: "table-wrap" }, h("table", { "data-testid": "api-operations" },
        h("tbody", {}, operations.map(({ path, method, operation }) => h("tr", {},
          h("td", { class: "nowrap" }, h("span", { class: `badge ${method === "get" ? "info" : method === "delete" ? "bad" : "ok"}`, text: method.toUpperCase() })),
          h("td", { class: "mono nowrap", text: path }),
          h("td", {}, h("b", { text: operation.summary || "" }),
            operation.description ? h("div", { class: "muted", text: operation.description.split("\n\n")[0] }) : null,
            (operation.parameters || []).length ? h("div", { class: "muted mono", text: `params: ${operation.parameters.map((p) => p.name).join(", ")}` }) : null))))))));
    }
  }

  // -- applications (the extension point) ---------------------------------------------------------------

  function registerApp(name, render) { appRenderers[name] = render; }

  function loadAppScript(name) {
    if (!appScripts[name]) {
      appScripts[name] = new Promise((resolve, reject) => {
        const script = h("script", { src: `/static/apps/${name}.js` });
        script.onload = resolve;
        script.onerror = () => reject(new Error(`no console page for ${name}`));
        document.head.append(script);
      });
    }
    return appScripts[name];
  }

  async function appPage(el, params, name) {
    try {
      await loadAppScript(name);
      await appRenderers[name](el, params);
    } catch (error) { el.append(errorBox(error)); }
  }

  let apps = [];
  async function loadApps() {
    try {
      const info = await api("/api/info");
      apps = info.apps;
      document.getElementById("key-button").hidden = !info.keys_required;
    } catch { apps = []; }
    document.getElementById("app-links").replaceChildren(...apps.map((app) =>
      h("a", { href: `#/apps/${app.name}`, "data-page": `apps/${app.name}`, title: app.description }, app.title)));
    markNav();
  }

  // -- router ----------------------------------------------------------------------------------------

  function markNav() {
    const page = (location.hash.slice(2) || "streams").split("?")[0];
    for (const a of document.querySelectorAll(".sidebar a[data-page]")) {
      const target = a.dataset.page;
      a.classList.toggle("active", page === target || page.startsWith(`${target}/`));
    }
  }

  async function route() {
    for (const fn of leaving) { try { fn(); } catch { /* a cleanup never blocks navigation */ } }
    leaving = [];
    const hash = location.hash.slice(2) || "streams";
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    const [section, ...rest] = path.split("/");
    const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
    main.replaceChildren();
    markNav();
    const el = h("div", { class: "page", "data-testid": `page-${section}` });
    main.append(el);
    if (section === "streams" && arg) await streamPage(el, params, arg);
    else if (section === "streams") await streamsPage(el, params);
    else if (section === "live") await livePage(el, params);
    else if (section === "groups" && arg) await groupPage(el, params, arg);
    else if (section === "groups") await groupsPage(el, params);
    else if (section === "projections") await projectionsPage(el, params);
    else if (section === "apps" && arg) await appPage(el, params, arg);
    else if (section === "api") await apiPage(el, params);
    else el.append(h("div", { class: "empty", text: "No such page." }));
  }

  // -- the navigation on a narrow screen: a menu opened from the top bar ----------------------------

  const sidebar = document.getElementById("sidebar");
  const navToggle = document.getElementById("nav-toggle");
  const showNav = (open) => {
    sidebar.classList.toggle("open", open);
    navToggle.setAttribute("aria-expanded", String(open));
  };
  navToggle.addEventListener("click", () => showNav(!sidebar.classList.contains("open")));
  window.addEventListener("hashchange", () => showNav(false));

  window.chronik = { lineChart, api, h, jsonView, dataLine, fmtTime, ago, euros, toast, onLeave, every, errorBox, pageHead, streamLink, registerApp, subscribe, blobUrl };
  window.addEventListener("hashchange", route);
  pollHead();
  loadApps().then(route);
})();
