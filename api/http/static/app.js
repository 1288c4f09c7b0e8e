// The reasoner page: starts a run with the runs API and follows its event stream.
// The stream is read with fetch (not EventSource) so it can carry an API key and resume
// with Last-Event-ID after a dropped connection; the run id lives in the URL, so a reload
// reconnects to the same run and replays it from the start.
"use strict";

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["run.completed", "run.failed", "run.cancelled", "run.interrupted"]);
let current = null; // {runId, abort: AbortController}
let stagesReported = false; // once the run sends `stage` events, they alone drive the status line
let seams = 0; // the run.resumed events seen: each is a restart the run was taken up after
const taskTokens = new Map(); // task id -> Map(attempt -> total tokens, or null for a failed attempt)
const tasks = new Map(); // task id -> {id, question, depends_on}, in plan order

// The plan is drawn as a graph: one column per depth (a task is one column right of its deepest
// dependency), an arrow from each dependency to its dependent. Where the columns do not fit, the
// cards stack in plan order (every dependency above its dependents) and the arrows run in the
// left margin. The arrows are an SVG under the cards, drawn again whenever a card moves or resizes.
const STATES = ["waiting", "running", "done", "failed", "stopped"];
const MIN_COLUMN_PX = 220; // a column narrower than this stacks the graph
const COLUMN_GAP_PX = 40; // as #plan's column-gap in app.css
const ANCHOR_PX = 20; // arrows meet a card this far below its top: at its title
const SVG = "http://www.w3.org/2000/svg";
let drawPending = false;
const resized = new ResizeObserver(() => scheduleDraw());

const STAGES = {
  planning: "Planning",
  answering: "Workers are answering",
  reviewing: "The critic is reviewing the answers",
  revising: "Workers are revising answers",
  writing: "Writing the answer",
};
const STEPS = { planning: "plan", answering: "answer", reviewing: "review", revising: "revise", writing: "write" };

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
  seams = 0;
  taskTokens.clear();
  tasks.clear();
  resized.disconnect();
  resized.observe($("graph"));
  for (const id of ["plan", "arrows", "critique", "timeline", "repairs"]) $(id).replaceChildren();
  $("graph").classList.remove("flat", "stacked");
  $("answer").textContent = "";
  $("usage-nodes").querySelector("tbody").replaceChildren();
  for (const id of ["plan-section", "critique-section", "answer-section", "repairs-section", "usage-section",
    "timeline", "run-note"]) {
    $(id).hidden = true;
  }
}

function step(text, className = "") {
  // The timeline: each stage as it began, the seams where the run was resumed, and its end.
  const last = $("timeline").lastElementChild;
  if (last && last.textContent === text) return;
  $("timeline").append(el("li", { className }, text));
  $("timeline").hidden = false;
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
    node = el("li", { className: "card waiting" });
    node.dataset.task = taskId;
    const title = el("h3");
    title.append(el("span", {}, taskId), el("span", { className: "badge" }, "waiting"));
    node.append(title, el("div", { className: "q" }), el("div", { className: "given" }), el("ol", { className: "tools" }),
      el("div", { className: "a" }), el("div", { className: "t" }), el("div", { className: "e" }));
    $("plan").append(node);
    $("plan-section").hidden = false;
    resized.observe(node);
    layout();
  }
  return node;
}

function stateOf(node) {
  return STATES.find((state) => node.classList.contains(state)) ?? "waiting";
}

function setCard(taskId, state, badge) {
  const node = card(taskId);
  node.classList.remove(...STATES);
  node.classList.add(state);
  node.querySelector(".badge").textContent = badge;
  scheduleDraw(); // an arrow is coloured by the state of the task it leaves
  return node;
}

function addTask(task) {
  // A task of the plan, the moment the planner has written it (plan.task).
  tasks.set(task.id, { id: task.id, question: task.question, depends_on: task.depends_on ?? [] });
  card(task.id).querySelector(".q").textContent = task.question;
  layout();
}

function setPlan(subtasks) {
  // The whole plan has the last word on which tasks there are, and in what order.
  const ids = new Set(subtasks.map((t) => t.id));
  for (const node of [...$("plan").children]) {
    if (!ids.has(node.dataset.task)) { resized.unobserve(node); node.remove(); }
  }
  tasks.clear();
  for (const t of subtasks) addTask(t);
  $("plan").append(...subtasks.map((t) => card(t.id))); // moves any card that is out of order
  layout();
}

function dependents(taskId) {
  // Every task that uses the answer of taskId, directly or through others (they come later in the plan).
  const found = new Set([taskId]);
  for (const t of tasks.values()) if (t.depends_on.some((d) => found.has(d))) found.add(t.id);
  found.delete(taskId);
  return found;
}

function layout() {
  // Columns by depth; the cards are in plan order, so a task's dependencies are placed before it.
  const depth = new Map();
  const rows = []; // depth -> cards in that column so far
  for (const node of $("plan").children) {
    const deps = tasks.get(node.dataset.task)?.depends_on ?? [];
    const d = 1 + Math.max(0, ...deps.map((id) => depth.get(id) ?? 0));
    depth.set(node.dataset.task, d);
    rows[d] = (rows[d] ?? 0) + 1;
    node.style.setProperty("--col", d);
    node.style.setProperty("--row", rows[d]);
  }
  const columns = Math.max(1, rows.length - 1);
  $("plan").style.setProperty("--cols", columns);
  $("plan").dataset.columns = columns;
  scheduleDraw();
}

function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; drawArrows(); });
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function drawArrows() {
  const graph = $("graph");
  const columns = Number($("plan").dataset.columns ?? 1);
  graph.classList.toggle("flat", columns === 1); // no dependencies: the cards just fill the width
  const fits = graph.clientWidth >= columns * MIN_COLUMN_PX + (columns - 1) * COLUMN_GAP_PX;
  graph.classList.toggle("stacked", columns > 1 && !fits);
  const stacked = graph.classList.contains("stacked");
  const origin = graph.getBoundingClientRect();
  const heads = svg("defs");
  for (const state of STATES) {
    const head = svg("marker", { id: `head-${state}`, class: state, viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 7, markerHeight: 7, markerUnits: "userSpaceOnUse", orient: "auto" });
    head.append(svg("path", { d: "M0,0 L10,5 L0,10 z" }));
    heads.append(head);
  }
  const arrows = [heads];
  const nodes = [...$("plan").children];
  for (const [index, node] of nodes.entries()) {
    const to = node.getBoundingClientRect();
    for (const dep of tasks.get(node.dataset.task)?.depends_on ?? []) {
      const source = nodes.find((n) => n.dataset.task === dep);
      if (!source) continue;
      const from = source.getBoundingClientRect();
      const anchor = (rect) => Math.min(ANCHOR_PX, rect.height / 2);
      const y2 = to.top - origin.top + anchor(to);
      let d;
      if (stacked) {
        // Out of the foot of the dependency's left edge, round through the margin, into the
        // dependent's left edge at its title.
        const y1 = from.bottom - origin.top - anchor(from);
        const x = to.left - origin.left;
        const bend = Math.min(26, 12 + 5 * (index - nodes.indexOf(source) - 1));
        d = `M${from.left - origin.left},${y1} C${x - bend},${y1} ${x - bend},${y2} ${x},${y2}`;
      } else {
        const y1 = from.top - origin.top + anchor(from);
        const x1 = from.right - origin.left;
        const x2 = to.left - origin.left;
        const pull = Math.max(12, (x2 - x1) / 2);
        d = `M${x1},${y1} C${x1 + pull},${y1} ${x2 - pull},${y2} ${x2},${y2}`;
      }
      const state = stateOf(source);
      const arrow = svg("path", { d, class: `edge ${state}`, "marker-end": `url(#head-${state})` });
      arrow.dataset.from = dep;
      arrow.dataset.to = node.dataset.task;
      arrows.push(arrow);
    }
  }
  $("arrows").replaceChildren(...arrows);
}

function settle(result) {
  // The result has the last word on each task: it also names the tasks that never ran because a
  // dependency failed for good (they have no events of their own). Its account (tokens, cost,
  // repairs, wall time) is shown as it states it.
  if (!result) return;
  showUsage(result.usage, result.by_node, result.calls);
  showRepairs(result.fallbacks);
  showResumes(result.timings, seams);
  if (result.plan?.length) setPlan(result.plan);
  for (const sub of result.subanswers ?? []) {
    const node = card(sub.task_id);
    if (sub.status === "ok" && stateOf(node) !== "done") {
      setCard(sub.task_id, "done", "done");
      node.querySelector(".a").textContent = sub.answer;
      node.querySelector(".e").textContent = "";
    } else if (sub.status === "failed" && stateOf(node) !== "failed") {
      setCard(sub.task_id, "failed", "failed");
      node.querySelector(".e").textContent = sub.error ?? "";
    }
  }
}

function stopAll() {
  // The run is over: a task still waiting or running will not go on.
  for (const node of $("plan").children) {
    if (["waiting", "running"].includes(stateOf(node))) setCard(node.dataset.task, "stopped", "stopped");
  }
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

const handlers = {
  "run.started": (d) => {
    $("question").value = d.question;
    if ("reasoning_effort" in d) $("effort").value = d.reasoning_effort ?? "";
    progress("Planning…");
  },
  "run.resumed": () => {
    // The run's process stopped and another took it up: work already done is not redone, but
    // the answer is written again from the start. Said whatever stage the run was in.
    seams += 1;
    $("answer").textContent = "";
    setStatus(`Resumed after a restart (${seams})…`);
    step(`resumed (${seams})`, "resumed");
    showResumes(null, seams);
  },
  stage: (d) => {
    stagesReported = true;
    setStatus(`${STAGES[d.stage] ?? d.stage}${d.round ? ` (round ${d.round})` : ""}…`);
    step(`${STEPS[d.stage] ?? d.stage}${d.round ? ` ${d.round}` : ""}`);
  },
  "plan.task": (d) => addTask(d.task),
  plan: (d) => {
    setPlan(d.subtasks);
    progress("Workers are answering…");
  },
  "task.started": (d) => {
    const node = setCard(d.task_id, "running", d.attempt > 1 ? `revising (${d.attempt})` : "running");
    node.querySelector(".e").textContent = "";
    node.querySelector(".tools").replaceChildren();
    node.querySelector(".given").textContent = d.inputs?.length ? `given ${d.inputs.join(", ")}` : "";
    if (d.attempt > 1) {
      // A revised answer is re-run through every task that used it: they wait for it again.
      for (const id of dependents(d.task_id)) {
        if (stateOf(card(id)) === "done") setCard(id, "waiting", "waiting");
      }
    }
  },
  "task.completed": (d) => {
    const node = setCard(d.task_id, "done", d.attempt > 1 ? `done (${d.attempt})` : "done");
    node.querySelector(".a").textContent = d.answer;
    recordAttempt(d.task_id, d.attempt, d.usage.total_tokens);
  },
  "tool.called": (d) => {
    // A tool call of the task's worker, inside its card: filled in when its result arrives.
    const item = el("li", {}, `${d.name} ${d.arguments}`);
    item.dataset.call = d.call_id;
    item.dataset.outcome = "running";
    card(d.task_id).querySelector(".tools").append(item);
  },
  "tool.result": (d) => {
    const list = card(d.task_id).querySelector(".tools");
    let item = [...list.children].find((li) => li.dataset.call === d.call_id);
    if (!item) item = list.appendChild(el("li", {}, d.name));
    item.dataset.outcome = d.error === null ? "ok" : "error";
    item.append(` → ${d.error === null ? d.result : `error: ${d.error}`} (${Math.round(d.duration_ms)} ms)`);
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
    settle(d.result);
    stopAll();
    $("answer-section").hidden = false;
    $("answer").textContent = d.result.answer;
    const wall = seconds(d.result.timings.total_ms); // from submission to end, resumes and all
    setStatus(d.result.status === "partial"
      ? `Done in ${wall}, but some parts could not be answered.` : `Done in ${wall}.`);
    step(`done in ${wall}`, "end");
  },
  "run.failed": (d) => {
    settle(d.result);
    stopAll();
    showError(`The run failed: ${d.error ? d.error.message : "unknown error"}`);
    setStatus("Failed.");
    step("failed", "end");
  },
  "run.cancelled": (d) => { settle(d.result); stopAll(); setStatus("Cancelled."); step("cancelled", "end"); },
  "run.interrupted": (d) => {
    settle(d.result);
    stopAll();
    showError("The service stopped while this run was in flight; it was interrupted.");
    step("interrupted", "end");
  },
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
