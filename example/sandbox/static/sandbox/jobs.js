// The jobs sandbox: poll the status badge every 2 s, start a demo job and follow its run until done.
// Everything from the server is put in the page with textContent, never as HTML.
(function () {
  "use strict";

  const STATUS_EVERY_MS = 2000;
  const RUN_EVERY_MS = 400;

  // Inline is a normal mode, not an error: a neutral badge with one word, "inline" or "broker".
  function setBadge(el, enabled, text) {
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("badge-on", enabled);
    el.classList.toggle("badge-neutral", !enabled);
  }

  function pollStatus() {
    const card = document.getElementById("jobs-status");
    if (!card) return;
    const url = card.dataset.statusUrl;
    const checked = document.getElementById("jobs-checked");
    async function tick() {
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
        if (!response.ok) throw new Error("HTTP " + response.status);
        const s = await response.json();
        setBadge(document.getElementById("jobs-badge"), s.enabled, s.label);
        // The header badge of base.html shows the same thing.
        setBadge(document.querySelector("[data-jobs-badge]"), s.enabled, s.label);
        document.getElementById("jobs-reason").textContent = s.reason;
        document.getElementById("jobs-mode").replaceChildren(code(s.label));
        const noWorker = document.getElementById("no-worker");
        noWorker.textContent = s.no_worker;
        noWorker.hidden = !s.no_worker;
        const broker = document.getElementById("jobs-broker");
        if (s.broker) {
          broker.replaceChildren(code(s.broker));
        } else {
          const none = document.createElement("span");
          none.className = "muted";
          none.textContent = "none";
          broker.replaceChildren(none);
        }
        checked.textContent = "checked " + new Date().toLocaleTimeString();
        checked.classList.remove("stale");
      } catch (err) {
        checked.textContent = "status unavailable (" + err.message + "), retrying";
        checked.classList.add("stale");
      } finally {
        window.setTimeout(tick, STATUS_EVERY_MS);
      }
    }
    tick();
  }

  function code(text) {
    const el = document.createElement("code");
    el.textContent = text;
    return el;
  }

  function showRun(run) {
    document.getElementById("demo-run").hidden = false;
    document.getElementById("demo-task").textContent = run.task;
    const status = document.getElementById("demo-status");
    status.textContent = run.status_display || run.status;
    status.className = "status status-" + (run.state || run.status);
    status.dataset.status = run.status;
    document.getElementById("demo-mode").textContent = run.mode;
    const percent = run.terminal && run.status === "succeeded" ? 100 : (run.progress && run.progress.percent) || 0;
    document.getElementById("demo-progress").style.width = percent + "%";
    const detail = document.getElementById("demo-detail");
    detail.replaceChildren(document.createTextNode("run "), code(run.id));
    if (run.progress && run.progress.stage && !run.terminal) {
      detail.append(" · " + run.progress.stage + " " + run.progress.done + "/" + run.progress.total);
    }
    if (run.terminal && run.result !== null && run.result !== undefined) {
      detail.append(" · result ", code(JSON.stringify(run.result)));
    }
    if (run.error) detail.append(" · " + run.error);
  }

  // Put a finished demo run at the top of the "Recent runs" table, as a reload would.
  function addRecentRun(run) {
    const body = document.getElementById("recent-runs");
    if (!body || body.querySelector('[data-run-id="' + CSS.escape(run.id) + '"]')) return;
    body.querySelectorAll(".empty-row").forEach((row) => row.remove());
    const row = document.createElement("tr");
    row.dataset.runId = run.id;
    const cells = [code(run.task), document.createElement("span"), run.mode, "just now", "–"];
    cells[1].className = "status status-" + (run.state || run.status);
    cells[1].textContent = run.status_display || run.status;
    if (run.started_at && run.finished_at) {
      cells[4] = ((Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000).toFixed(2) + " s";
    }
    for (const content of cells) {
      const cell = document.createElement("td");
      cell.append(content);
      row.append(cell);
    }
    body.prepend(row);
  }

  function followRun(url) {
    async function tick() {
      let run;
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
        if (!response.ok) throw new Error("HTTP " + response.status);
        run = await response.json();
        showRun(run);
      } catch (err) {
        document.getElementById("demo-detail").textContent = "could not read the run (" + err.message + "), retrying";
      }
      if (!run || !run.terminal) {
        window.setTimeout(tick, RUN_EVERY_MS);
      } else {
        addRecentRun(run);
      }
    }
    tick();
  }

  function demoForm() {
    const form = document.getElementById("demo-form");
    if (!form) return;
    const bar = document.getElementById("demo-progress");
    if (bar && bar.dataset.percent) bar.style.width = bar.dataset.percent + "%";
    // Without JavaScript the form redirects back with ?run=<id>; pick up following such a run.
    const watched = document.getElementById("demo-run");
    if (watched && watched.dataset.runUrl) followRun(watched.dataset.runUrl);
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const data = new FormData(form);
      if (event.submitter && event.submitter.name) data.set(event.submitter.name, event.submitter.value);
      const buttons = form.querySelectorAll("button");
      buttons.forEach((b) => (b.disabled = true));
      showRun({
        id: "…",
        task: data.get("task"),
        status: "queued",
        status_display: "Submitting",
        mode: "",
        progress: null,
        terminal: false,
      });
      try {
        const response = await fetch(form.action, {
          method: "POST",
          body: data,
          headers: { Accept: "application/json", "X-CSRFToken": data.get("csrfmiddlewaretoken") },
          credentials: "same-origin",
        });
        if (!response.ok) {
          let message = "HTTP " + response.status;
          try {
            message = (await response.json()).error || message;
          } catch (ignored) {
            // not JSON: keep the status code
          }
          throw new Error(message);
        }
        const started = await response.json();
        showRun(started.run);
        followRun(started.status_url);
      } catch (err) {
        document.getElementById("demo-detail").textContent = "could not start the job (" + err.message + ")";
      } finally {
        buttons.forEach((b) => (b.disabled = false));
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    pollStatus();
    demoForm();
  });
})();
