// Live status of documents being processed: every element with data-status-url polls that URL
// (/documents/<id>/status.json) until the document is ready or failed, and updates its
// [data-field] children in place. With data-reload-when-done (the document page) the page reloads
// once at the end, to show the chunks and final figures rendered by the server.
(function () {
  "use strict";

  var INTERVAL_MS = 1500;
  var RETRY_MS = 5000;

  function set(el, field, text) {
    var target = el.querySelector('[data-field="' + field + '"]');
    if (target) target.textContent = text;
    return target;
  }

  function dash(value) {
    return value === null || value === undefined || value === "" ? "\u2014" : String(value);
  }

  function update(el, data) {
    var badge = set(el, "status", data.status_display);
    if (badge) badge.className = badge.className.replace(/\bstatus-\S+/, "status-" + data.status);

    var progress = el.querySelector('[data-field="progress"]');
    if (progress) progress.hidden = !data.active;
    var bar = el.querySelector('[data-field="bar"]');
    if (bar && data.progress.percent !== null) bar.value = data.progress.percent;
    set(el, "label", data.progress.label);
    var running = data.run && data.run.status === "running";
    set(el, "where", running ? (data.run.mode === "worker" ? "on a worker" : "inline, in the web process") : "");

    var message = data.error || data.stalled;
    var error = set(el, "error", message ? message.charAt(0).toUpperCase() + message.slice(1) : "");
    if (error) error.hidden = !message;

    set(el, "pages", dash(data.page_count));
    set(el, "chunks", dash(data.chunk_count));
    set(el, "embedder", dash(data.embedder));

    var stages = document.querySelectorAll("[data-stage]");
    for (var i = 0; i < stages.length; i++) {
      var seconds = data.timings[stages[i].getAttribute("data-stage")];
      if (typeof seconds === "number") set(stages[i], "seconds", seconds.toFixed(3) + " s");
    }
  }

  function poll(el) {
    var url = el.getAttribute("data-status-url");
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 404) return { gone: true };
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (data.gone) return el.removeAttribute("data-status-url"); // deleted meanwhile
        update(el, data);
        if (data.active) {
          window.setTimeout(function () { poll(el); }, INTERVAL_MS);
        } else {
          el.removeAttribute("data-status-url");
          if (el.hasAttribute("data-reload-when-done")) window.location.reload();
        }
      })
      .catch(function () {
        window.setTimeout(function () { poll(el); }, RETRY_MS);
      });
  }

  function start() {
    var watched = document.querySelectorAll("[data-status-url]");
    for (var i = 0; i < watched.length; i++) poll(watched[i]);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
