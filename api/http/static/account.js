// The run's account, as its result and its `usage` event state it: tokens and what they cost,
// which counts are estimated and why, the repairs the run made, and its wall time and resumes.
// Nothing is added up here: every figure is the service's own.
"use strict";

const ESTIMATED_INPUT = "input and reasoning: estimated. The question's tokens are counted here with a"
  + " local tokenizer, not the model's own; reasoning is the rest of the total, so it is off by as much.";

const NODE_COLUMNS = ["node", "calls", "prompt", "completion", "total", "cost"];

function priced(usage, byNode) {
  // A cost where every model called has a price (else it is null), and a call was made.
  return usage.cost_usd != null && Object.values(byNode).some((u) => u.calls > 0);
}

function dollars(cost) {
  return cost == null ? "—" : `$${cost.toFixed(6)}`;
}

function figure(cell, value, estimated) {
  // A table cell: the number, and a label under it when it is not exact.
  cell.textContent = String(value);
  cell.classList.toggle("estimated", estimated);
  if (estimated) cell.append(el("span", { className: "est" }, "estimated"));
  return cell;
}

function estimatedCalls(calls) {
  // Why the calls whose tokens were counted here, not reported by the backend, were so.
  const cut = calls.filter((c) => c.estimated && c.error === "interrupted").length;
  const unreported = calls.filter((c) => c.estimated && c.error === null).length;
  const failed = calls.filter((c) => c.estimated && c.error !== null && c.error !== "interrupted").length;
  const reasons = [];
  if (cut) reasons.push(`${cut} cut short by a restart (their prompts and what had streamed are counted)`);
  if (unreported) reasons.push(`${unreported} answered without a usage report (counted here from their text)`);
  if (failed) reasons.push(`${failed} failed before reporting usage (their prompts are counted)`);
  return reasons;
}

function usageNotes(usage, calls) {
  const notes = [];
  if (!usage.input_tokens_exact) notes.push(ESTIMATED_INPUT);
  if (usage.estimated) {
    const reasons = calls ? estimatedCalls(calls) : [];
    const why = reasons.length ? `: ${reasons.join("; ")}` : " (cut by a restart, or the backend reports none)";
    notes.push(`total: estimated. Some calls reported no usage${why}.`);
  }
  if (!notes.length) notes.push("Exact counts, as reported by the model backend.");
  $("u-notes").replaceChildren(...notes.map((note) => el("li", {}, note)));
}

function showUsage(usage, byNode, calls = null) {
  // `calls` (the result's) say which nodes' counts are estimated; the `usage` event has none.
  $("usage-section").hidden = false;
  const withCost = priced(usage, byNode);
  const inexact = !usage.input_tokens_exact;
  const synthesized = (calls ?? []).filter((c) => c.node === "synthesizer" && c.error === null);
  figure($("u-input"), usage.input_tokens, inexact);
  figure($("u-output"), usage.output_tokens, synthesized.some((c) => c.estimated));
  figure($("u-reasoning"), usage.reasoning_tokens, inexact || usage.estimated);
  figure($("u-total"), usage.total_tokens, usage.estimated);
  figure($("u-cost"), dollars(usage.cost_usd), usage.estimated);
  for (const cost of document.querySelectorAll("#usage-section .cost")) cost.hidden = !withCost;
  usageNotes(usage, calls);
  const body = $("usage-nodes").querySelector("tbody");
  body.replaceChildren();
  for (const [node, u] of Object.entries(byNode)) {
    const estimated = calls ? calls.some((c) => c.node === node && c.estimated) : usage.estimated;
    const row = el("tr");
    row.dataset.node = node;
    row.append(el("td", {}, node), el("td", {}, String(u.calls)));
    for (const value of [u.prompt_tokens, u.completion_tokens, u.total_tokens]) {
      row.append(figure(el("td"), value, estimated));
    }
    if (withCost) row.append(figure(el("td", { className: "cost" }), dollars(u.cost_usd), estimated));
    // Each cell carries its column's name, for the narrow layout that stacks the rows (app.css).
    for (const [i, cell] of [...row.children].entries()) cell.dataset.label = NODE_COLUMNS[i];
    body.append(row);
  }
}

function showRepairs(fallbacks) {
  // The places where the run replaced a model's unusable output with a safe default.
  $("repairs-section").hidden = !fallbacks?.length;
  $("repairs").replaceChildren(...(fallbacks ?? []).map((f) => {
    const item = el("li");
    item.append(el("span", { className: "where" }, `${f.node} · ${f.kind}`), el("div", { className: "detail" }, f.detail));
    return item;
  }));
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

function showResumes(timings, seen) {
  // `seen`: the run.resumed events this page saw; the result's count, where it has one, rules.
  const resumes = timings?.resumes ?? seen;
  $("run-note").hidden = !resumes;
  if (!resumes) return;
  const active = timings?.active_ms != null ? `, ${seconds(timings.active_ms)} of it running` : "";
  const wall = timings ? ` ${seconds(timings.total_ms)} from submission to end${active}.` : "";
  $("run-note").textContent = `Resumed after a restart (${resumes}): another process took the run up where`
    + ` it stopped.${wall}`;
}
