// Few-shot console: every value from the server goes into the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const base = new URL(".", window.location.href).href.replace(/\/$/, "");
const state = { tenant: "", labels: [], texts: [] };
const EXPLAIN = 3; // evidence per prediction: the nearest examples of the predicted label and of the runner-up

function status(message) { $("status").textContent = message; }

function key() { return $("key").value.trim(); }

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (key()) headers.Authorization = "Bearer " + key();
  const response = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    throw new Error(`${response.status} ${error.code || ""}: ${error.message || response.statusText}`);
  }
  return data;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fmt(value, digits = 3) { return value === null || value === undefined ? "-" : Number(value).toFixed(digits); }
function pct(value) { return value === null || value === undefined ? "-" : (100 * value).toFixed(1) + " %"; }

function fillTable(id, rows) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = el("tr");
    for (const cell of row) tr.appendChild(el("td", cell));
    body.appendChild(tr);
  }
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", "none");
    td.colSpan = $(id).querySelectorAll("th").length;
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

async function connect() {
  sessionStorage.setItem("fewshot-key", key());
  status("loading tenants...");
  const { tenants } = await api("GET", "/tenants");
  const select = $("tenant");
  select.replaceChildren();
  if (!tenants.length) select.appendChild(el("option", "(no tenants yet: adapt one below)"));
  for (const id of tenants) {
    const option = el("option", id);
    option.value = id;
    select.appendChild(option);
  }
  const wanted = new URLSearchParams(window.location.hash.slice(1)).get("tenant");
  if (wanted && tenants.includes(wanted)) select.value = wanted;
  status(`${tenants.length} tenant(s)`);
  if (select.value) await evaluate();
}

// The tenant's record: its encoder tier, task and labels (the labels fill each prediction's "correct" control).
async function describe() {
  const info = await api("GET", `/tenants/${encodeURIComponent(state.tenant)}`);
  state.labels = info.labels;
  $("tenant-info").textContent = `${info.tenant_id}: encoder ${info.encoder} · ${info.task.replace("_", "-")} · version ${info.version} · ${info.n_examples} examples · ${info.labels.length} labels`;
}

async function evaluate() {
  state.tenant = $("tenant").value;
  if (!state.tenant) return;
  await describe();
  status(`evaluating ${state.tenant}...`);
  const reply = await api("POST", `/tenants/${encodeURIComponent(state.tenant)}/evaluate`, {});
  renderReport(reply);
  status(`report for ${state.tenant} v${reply.version}${reply.cached ? " (cached)" : ""} in ${fmt(reply.timings_ms.total, 0)} ms`);
}

function renderReport(reply) {
  const report = reply.report;
  $("report").hidden = false;
  $("report-version").textContent = `${reply.tenant_id} · version ${reply.version}`;
  if (report.task === "multi_label") return renderMultiLabelReport(report);
  $("headline-name").textContent = "accuracy";
  $("third-name").textContent = "calibration error (ECE)";
  $("accuracy").textContent = pct(report.accuracy);
  $("accuracy-ci").textContent = report.accuracy_ci95 ? `95 % CI ${pct(report.accuracy_ci95[0])} - ${pct(report.accuracy_ci95[1])}` : "";
  renderProjection(report);
  $("macro-f1").textContent = fmt(report.macro_f1);
  $("ece").textContent = fmt(report.ece);
  $("evaluated").textContent = `${report.n_evaluated} / ${report.n_examples}`;
  $("method").textContent = report.method === "cross_validation" ? `scored in ${report.n_folds}-fold cross-validation` : "scored on the test set";
  const lonely = $("not-evaluable");
  lonely.hidden = !report.not_evaluable.length;
  lonely.textContent = `Not evaluable (a single example): ${report.not_evaluable.join(", ")}`;
  renderBars(report.per_label);
  renderConfusion(report.confusion);
  fillTable("needs", report.labels_needing_examples.map((n) => [n.label, n.examples, n.reasons.join("; ")]));
  fillTable("pairs", report.confused_pairs.map((p) => [p.true, p.predicted, p.count, p.examples.join(" | ")]));
  fillTable("mislabels", report.suspected_mislabels.map((m) => [m.text, m.label, m.nearest_label, fmt(m.margin)]));
  fillTable("duplicates", report.near_duplicates.map((d) => [d.a.text, d.a.label, d.b.text, d.b.label, fmt(d.similarity)]));
  fillTable("oos", report.oos_tradeoff.map((p) => [p.rule, fmt(p.threshold), pct(p.in_scope_recall), pct(p.false_rejection), pct(p.accuracy)]));
}

// The headline is measured; the learning-curve projection stays apart, labelled as what it is.
function renderProjection(report) {
  const projection = $("projection");
  const curve = report.learning_curve;
  projection.hidden = report.projected_accuracy == null || !curve;
  projection.textContent = projection.hidden ? "" : `projection, not measured: ${pct(report.projected_accuracy)} with all ${fmt(curve.examples_per_label[2], 1)} examples per label (folds trained on ${fmt(curve.examples_per_label[1], 1)})`;
}

// Multi-label: micro-F1 and exact match in the cards, per-label F1 bars with thresholds, no confusion matrix.
function renderMultiLabelReport(report) {
  $("headline-name").textContent = "micro-F1";
  $("third-name").textContent = "exact match";
  $("accuracy").textContent = pct(report.micro_f1);
  renderProjection({});
  const perText = report.labels_per_text;
  $("accuracy-ci").textContent = `labels per text ${fmt(perText.predicted, 2)} (true ${fmt(perText.true, 2)})`;
  $("macro-f1").textContent = fmt(report.macro_f1);
  $("ece").textContent = pct(report.exact_match);
  $("evaluated").textContent = `${report.n_evaluated} / ${report.n_examples}`;
  $("method").textContent = report.method === "cross_validation" ? `multi-label, ${report.n_folds}-fold cross-validation` : "multi-label, test set";
  const note = $("not-evaluable");
  note.hidden = !report.n_negatives;
  note.textContent = `${report.n_negatives} negative example(s): texts to which no label applies`;
  renderBars(report.per_label);
  const box = $("confusion");
  box.replaceChildren(el("p", "Thresholds per label (a label applies at or above its own):"));
  const table = el("table");
  table.appendChild(el("tr")).append(el("th", "label"), el("th", "threshold"), el("th", "precision"), el("th", "recall"));
  for (const entry of report.per_label) table.appendChild(el("tr")).append(el("td", entry.label), el("td", fmt(entry.threshold, 2)), el("td", fmt(entry.precision)), el("td", fmt(entry.recall)));
  box.appendChild(table);
  fillTable("needs", report.labels_needing_examples.map((n) => [n.label, n.examples, n.reasons.join("; ")]));
  for (const id of ["pairs", "mislabels", "duplicates", "oos"]) fillTable(id, []);
}

function renderBars(perLabel) {
  const bars = $("bars");
  bars.replaceChildren();
  const sorted = [...perLabel].sort((a, b) => (a.f1 ?? -1) - (b.f1 ?? -1));
  for (const entry of sorted) {
    const row = el("div", null, "bar");
    const name = el("span", entry.label, "name");
    const corrected = entry.corrections ? `, ${entry.corrections} from corrections` : "";
    name.title = `${entry.label}: ${entry.examples} examples${corrected}, precision ${fmt(entry.precision)}, recall ${fmt(entry.recall)}`;
    const track = el("span", null, "track");
    const fill = el("span", null, "fill" + (entry.f1 === null ? " none" : entry.f1 < 0.8 ? " low" : ""));
    fill.style.display = "block";
    fill.style.width = `${entry.f1 === null ? 100 : Math.round(100 * entry.f1)}%`;
    track.appendChild(fill);
    row.append(name, track, el("span", entry.f1 === null ? "n/a" : fmt(entry.f1, 2)));
    bars.appendChild(row);
  }
}

function renderConfusion(confusion) {
  const box = $("confusion");
  box.replaceChildren();
  if (confusion.format !== "dense") {
    box.appendChild(el("p", `${confusion.labels.length} labels: the non-zero off-diagonal cells`));
    const table = el("table");
    table.appendChild(el("tr")).append(el("th", "true"), el("th", "predicted"), el("th", "count"));
    for (const cell of confusion.cells.slice(0, 50)) table.appendChild(el("tr")).append(el("td", cell.true), el("td", cell.predicted), el("td", cell.count));
    box.appendChild(table);
    return;
  }
  const table = el("table", null, "heatmap");
  const head = el("tr");
  head.appendChild(el("th", "true \\ predicted"));
  for (const label of confusion.labels) head.appendChild(el("th", label, "col"));
  table.appendChild(head);
  confusion.matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    const tr = el("tr");
    tr.appendChild(el("th", confusion.labels[i]));
    row.forEach((count, j) => {
      const td = el("td", count || "");
      const share = count / total;
      td.style.background = i === j ? `rgba(60,125,217,${share})` : `rgba(217,85,60,${Math.min(1, 2 * share)})`;
      td.title = `${confusion.labels[i]} -> ${confusion.labels[j]}: ${count}`;
      tr.appendChild(td);
    });
    table.appendChild(tr);
  });
  box.appendChild(table);
}

function lines(id) { return $(id).value.split("\n").map((s) => s.trim()).filter(Boolean); }

async function predict(texts = lines("predict-texts")) {
  state.tenant = state.tenant || $("tenant").value;
  const reply = await api("POST", "/predict", { tenant_id: state.tenant, texts, top_k: 2, explain: EXPLAIN });
  state.texts = texts;
  renderPredictions(texts, reply);
  status(`predicted ${texts.length} text(s) with version ${reply.version}`);
}

function shownLabel(p) {
  if (p.labels) return p.labels.length ? p.labels.map((l) => `${l.label} ${fmt(l.score, 2)}`).join(", ") : "(none applies)";
  return p.out_of_scope ? "(out of scope)" : p.label;
}

// One row per text: the prediction, its evidence (support examples with their cosine similarity) and a control
// that posts the right label as a correction (/tenants/{id}/feedback), then predicts the same texts again.
function renderPredictions(texts, reply) {
  const body = $("predictions").querySelector("tbody");
  body.replaceChildren();
  reply.predictions.forEach((p, i) => {
    const tr = el("tr");
    tr.append(el("td", texts[i]), el("td", shownLabel(p), "predicted"), el("td", fmt(p.score)));
    const evidence = el("ul", null, "evidence");
    for (const e of p.evidence || []) evidence.appendChild(el("li", `${e.label}: ${e.text} (${fmt(e.similarity, 2)})`));
    tr.appendChild(el("td")).appendChild(evidence);
    const cell = el("td", null, "correct");
    if (reply.task !== "multi_label") {
      const choice = el("select");
      for (const label of state.labels) {
        const option = el("option", label);
        option.value = label;
        choice.appendChild(option);
      }
      if (p.label) choice.value = p.label;
      const button = el("button", "correct");
      button.type = "button";
      button.addEventListener("click", guarded(() => correct(texts[i], choice.value, p.label)));
      cell.append(choice, button);
    } else cell.textContent = "append with /adapt";
    tr.appendChild(cell);
    body.appendChild(tr);
  });
}

async function correct(text, label, predicted) {
  const path = `/tenants/${encodeURIComponent(state.tenant)}/feedback`;
  const reply = await api("POST", path, { corrections: [{ text, label, predicted }] });
  await describe();
  await predict(state.texts);
  const what = reply.added ? `added as ${label}` : `already held as ${label}`;
  status(`corrected: "${text}" ${what} · version ${reply.version}${reply.relabelled ? ` (${reply.relabelled} relabelled)` : ""}`);
}

function parseCsvLine(line) {
  const cells = [];
  let cell = "", quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { cells.push(cell); cell = ""; } else cell += c;
  }
  cells.push(cell);
  return cells;
}

function parseExamples(raw) {
  const rows = raw.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
  const examples = [];
  for (const row of rows) {
    if (row.startsWith("{")) {
      const item = JSON.parse(row);
      if (Array.isArray(item.labels)) examples.push({ text: String(item.text), labels: item.labels.map(String) });
      else examples.push({ text: String(item.text), label: String(item.label) });
      continue;
    }
    const cells = parseCsvLine(row);
    if (cells.length < 2) throw new Error(`not "text,label": ${row.slice(0, 60)}`);
    const label = cells.pop().trim();
    const text = cells.join(",").trim();
    if (text.toLowerCase() === "text" && label.toLowerCase() === "label") continue; // header
    examples.push({ text, label });
  }
  return examples;
}

async function adapt() {
  const examples = parseExamples($("adapt-data").value);
  const tenant = $("adapt-tenant").value.trim() || $("tenant").value;
  const mode = $("adapt-mode").value;
  const body = { tenant_id: tenant, examples, mode };
  // JSONL rows with "labels": [...] make a multi-label tenant (append keeps the tenant's own task)
  if (mode === "replace" && examples.some((e) => Array.isArray(e.labels))) body.task = "multi_label";
  const reply = await api("POST", "/adapt", body);
  $("adapt-result").textContent = `${tenant}: version ${reply.version}, ${reply.n_examples} examples, ${reply.labels.length} labels`;
  await connect();
  $("tenant").value = tenant;
  await evaluate();
}

async function suggest() {
  const texts = lines("suggest-texts");
  const k = Number($("suggest-k").value) || 10;
  const body = texts.length ? { texts, k } : { k }; // no texts: the tenant's unlabeled pool
  const reply = await api("POST", `/tenants/${encodeURIComponent($("tenant").value)}/suggest`, body);
  fillTable("suggestions", reply.suggestions.map((s) => [s.text, `${s.predicted_label} (${fmt(s.score, 2)})`, s.reason]));
  const source = reply.source === "unlabeled" ? "unlabeled pool text(s)" : "text(s)";
  status(`${reply.suggestions.length} suggestion(s) from ${reply.pool_size} ${source}: label them, then Adapt with mode append`);
}

function guarded(action) {
  return (event) => {
    if (event) event.preventDefault();
    action().catch((error) => status(error.message));
  };
}

$("connect").addEventListener("submit", guarded(connect));
$("refresh").addEventListener("click", guarded(evaluate));
$("tenant").addEventListener("change", guarded(evaluate));
$("predict").addEventListener("click", guarded(predict));
$("adapt").addEventListener("click", guarded(adapt));
$("suggest").addEventListener("click", guarded(suggest));
$("adapt-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (file) $("adapt-data").value = await file.text();
});
$("key").value = sessionStorage.getItem("fewshot-key") || "";
guarded(connect)();
