// The reasoner page: starts a run with the runs API and follows its event stream.
// The stream is read with fetch (not EventSource) so it can carry an API key and resume
// with Last-Event-ID after a dropped connection; the run id lives in the URL, so a reload
// reconnects to the same run and replays it from the start.
"use strict";

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["run.completed", "run.failed", "run.cancelled", "run.interrupted"]);
let current = null; // {runId, abort: AbortController}
let stagesReported = false; // once the run sends `stage` events, they alone drive the status line
const taskTokens = new Map(); // task id -> Map(attempt -> total tokens, or null for a failed attempt)

const STAGES = {
  planning: "Planning",
  answering: "Workers are answering",
  reviewing: "The critic is reviewing the answers",
  revising: "Workers are revising answers",
  writing: "Writing the answer",
};

function headers(extra = {}) {
  const key = $("apikey").value.trim() || sessionStorage.getItem("reasoner-key") || "";
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setStatus(text) { $("status").textContent = text; }

function progress(text) {
  if (!stagesReported) setStatus(text);
}

function reset() {
  showError("");
  stagesReported = false;
  taskTokens.clear();
  for (const id of ["plan", "workers", "critique"]) $(id).replaceChildren();
  $("answer").textContent = "";
  $("usage-nodes").querySelector("tbody").replaceChildren();
  for (const id of ["plan-section", "workers-section", "critique-section", "answer-section", "usage-section"]) {
    $(id).hidden = true;
  }
}

function el(tag, props = {}, text = "") {
  const node = document.createElement(tag);
  Object.assign(node, props);
  if (text) node.textContent = text;
  return node;
}

function card(taskId) {
  let node = document.querySelector(`.card[data-task="${CSS.escape(taskId)}"]`);
  if (!node) {
    node = el("div", { className: "card" });
    node.dataset.task = taskId;
    const title = el("h3");
    title.append(el("span", {}, taskId), el("span", { className: "badge" }, "waiting"));
    node.append(title, el("div", { className: "q" }), el("div", { className: "a" }), el("div", { className: "t" }),
      el("div", { className: "e" }));
    $("workers").append(node);
    $("workers-section").hidden = false;
  }
  return node;
}

function setCard(taskId, state, badge) {
  const node = card(taskId);
  node.classList.remove("running", "done", "failed");
  node.classList.add(state);
  node.querySelector(".badge").textContent = badge;
  return node;
}

function recordAttempt(taskId, attempt, tokens) {
  // The card shows the tokens of all its attempts; a failed attempt reports none.
  const attempts = taskTokens.get(taskId) ?? new Map();
  taskTokens.set(taskId, attempts.set(attempt, tokens));
  const rows = [...attempts].sort(([a], [b]) => a - b);
  const reported = rows.filter(([, t]) => t !== null);
  let text = "";
  if (reported.length) {
    text = `${reported.reduce((sum, [, t]) => sum + t, 0)} tokens`;
    if (rows.length > 1) text += ` (${rows.map(([n, t]) => `attempt ${n}: ${t ?? "failed"}`).join(", ")})`;
  }
  card(taskId).querySelector(".t").textContent = text;
}

function showUsage(usage, byNode) {
  $("usage-section").hidden = false;
  $("u-input").textContent = usage.input_tokens;
  $("u-output").textContent = usage.output_tokens;
  $("u-reasoning").textContent = usage.reasoning_tokens;
  $("u-total").textContent = usage.total_tokens;
  $("u-note").textContent = usage.estimated
    ? "Some calls reported no usage; their tokens are estimated."
    : "Exact counts, as reported by the model backend.";
  const body = $("usage-nodes").querySelector("tbody");
  body.replaceChildren();
  for (const [node, u] of Object.entries(byNode)) {
    const row = el("tr");
    for (const value of [node, u.calls, u.prompt_tokens, u.completion_tokens, u.total_tokens]) {
      row.append(el("td", {}, String(value)));
    }
    body.append(row);
  }
}

const handlers = {
  "run.started": (d) => {
    $("question").value = d.question;
    if ("reasoning_effort" in d) $("effort").value = d.reasoning_effort ?? "";
    progress("Planning…");
  },
  stage: (d) => {
    stagesReported = true;
    setStatus(`${STAGES[d.stage] ?? d.stage}${d.round ? ` (round ${d.round})` : ""}…`);
  },
  plan: (d) => {
    $("plan-section").hidden = false;
    $("plan").replaceChildren(...d.subtasks.map((t) => el("li", {}, `${t.id}: ${t.question}`)));
    for (const t of d.subtasks) card(t.id).querySelector(".q").textContent = t.question;
    progress("Workers are answering…");
  },
  "task.started": (d) => {
    const node = setCard(d.task_id, "running", d.attempt > 1 ? `revising (${d.attempt})` : "running");
    node.querySelector(".e").textContent = "";
  },
  "task.completed": (d) => {
    const node = setCard(d.task_id, "done", d.attempt > 1 ? `done (${d.attempt})` : "done");
    node.querySelector(".a").textContent = d.answer;
    recordAttempt(d.task_id, d.attempt, d.usage.total_tokens);
  },
  "task.failed": (d) => {
    const node = setCard(d.task_id, "failed", "failed");
    node.querySelector(".e").textContent = d.error;
    recordAttempt(d.task_id, d.attempt, null);
  },
  critique: (d) => {
    $("critique-section").hidden = false;
    for (const v of d.verdicts) {
      const item = el("li", { className: `verdict-${v.verdict}` });
      item.append(el("span", { className: "verdict" }, `round ${v.round} · ${v.task_id}: ${v.verdict}`));
      if (v.feedback) {
        item.append(el("div", { className: "feedback" }, v.feedback));
      } else if (v.verdict === "revise") {
        item.append(el("div", { className: "feedback missing" }, "The critic gave no reason."));
      }
      $("critique").append(item);
    }
    progress("The critic has reviewed the answers.");
  },
  "answer.delta": (d) => {
    $("answer-section").hidden = false;
    $("answer").textContent += d.text;
    progress("Writing the answer…");
  },
  usage: (d) => showUsage(d.usage, d.by_node),
  "run.completed": (d) => {
    $("answer-section").hidden = false;
    $("answer").textContent = d.result.answer;
    showUsage(d.result.usage, d.result.by_node);
    setStatus(d.result.status === "partial"
      ? "Done, but some parts could not be answered." : `Done in ${(d.result.timings.total_ms / 1000).toFixed(1)} s.`);
  },
  "run.failed": (d) => { showError(`The run failed: ${d.error ? d.error.message : "unknown error"}`); setStatus("Failed."); },
  "run.cancelled": () => setStatus("Cancelled."),
  "run.interrupted": () => showError("The service stopped while this run was in flight; it was interrupted."),
};

function parseFrames(buffer, onEvent) {
  // Returns the unparsed tail. Frames end with a blank line.
  let index;
  while ((index = buffer.indexOf("\n\n")) !== -1) {
    const frame = buffer.slice(0, index);
    buffer = buffer.slice(index + 2);
    const event = { id: null, name: "message", data: "" };
    for (const line of frame.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") event.id = Number(value);
      else if (field === "event") event.name = value;
      else if (field === "data") event.data += value;
    }
    if (event.data) onEvent(event);
  }
  return buffer;
}

async function endedStatus(runId) {
  // The run's status if it is over, else null.
  const view = await fetch(`/v1/runs/${encodeURIComponent(runId)}`, { headers: headers() });
  const run = view.ok ? await view.json() : null;
  return run && !["queued", "running"].includes(run.status) ? run.status : null;
}

async function follow(runId) {
  const abort = new AbortController();
  current = { runId, abort };
  $("cancel").hidden = false;
  $("submit").disabled = true;
  let lastId = 0;
  let finished = false;
  for (let attempt = 0; !finished && attempt < 30 && !abort.signal.aborted; attempt++) {
    try {
      const response = await fetch(`/v1/runs/${encodeURIComponent(runId)}/events`, {
        headers: headers(lastId ? { "Last-Event-ID": String(lastId) } : {}),
        signal: abort.signal,
      });
      if (response.status === 204) {
        // No Content: the run is over and this page already has every event it sent.
        const status = await endedStatus(runId).catch(() => null);
        setStatus(status ? `The run ended: ${status}.` : "The run has ended.");
        break;
      }
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        showError(body.error ? body.error.message : `HTTP ${response.status}`);
        break;
      }
      showError("");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = parseFrames(buffer + value, (event) => {
          lastId = event.id ?? lastId;
          const handler = handlers[event.name];
          if (handler) handler(JSON.parse(event.data));
          if (TERMINAL.has(event.name)) finished = true;
        });
      }
      if (!finished) {
        // The stream ended without a final event: if the run is over (say, another process
        // owned it), stop; otherwise reconnect after a pause.
        const status = await endedStatus(runId);
        if (status) {
          setStatus(`The run ended: ${status}.`);
          finished = true;
        } else {
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    } catch (err) {
      if (abort.signal.aborted) break;
      setStatus("Connection lost; reconnecting…");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  $("cancel").hidden = true;
  $("submit").disabled = false;
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) { showError("Please type a question."); return; }
  if ($("apikey").value.trim()) sessionStorage.setItem("reasoner-key", $("apikey").value.trim());
  if (current) current.abort.abort();
  reset();
  setStatus("Starting…");
  const body = { question };
  if ($("effort").value) body.reasoning_effort = $("effort").value;
  let response;
  try {
    response = await fetch("/v1/runs", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
  } catch (err) {
    showError(`Cannot reach the service: ${err.message}`);
    setStatus("");
    return;
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    showError(data.error ? data.error.message : `HTTP ${response.status}`);
    setStatus("");
    return;
  }
  history.replaceState(null, "", `#run=${data.run_id}`);
  follow(data.run_id);
}

async function cancel() {
  if (!current) return;
  await fetch(`/v1/runs/${encodeURIComponent(current.runId)}/cancel`, { method: "POST", headers: headers() });
}

$("ask").addEventListener("submit", ask);
$("cancel").addEventListener("click", cancel);
const resume = new URLSearchParams(location.hash.slice(1)).get("run");
if (resume) { reset(); setStatus("Reconnecting to the run…"); follow(resume); }
