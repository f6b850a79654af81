// The review page: queue, frame view and one-key decisions, in plain JavaScript (no library).
//
// Every decision is a full review body (frame decision, per-box corrections, disposition, note)
// put in an outbox in localStorage *before* it is sent, and sent in order with a client_id, so
// a reload, a dropped connection or an expired session loses nothing: the outbox is sent again
// (the server stores a client_id once) and the header shows how many are not yet saved.
//
// Nothing is decided on a frame whose image has not loaded (the keys and buttons wait for it),
// a box correction leaves the other boxes "not decided yet" (sent as `undecided`), and a
// decision identical to the frame's current one is not sent at all.
"use strict";

(function () {
  const cfg = JSON.parse(document.getElementById("config").textContent);
  const t = (text) => cfg.messages[text] || text;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const OUTBOX = `qc-review-outbox:${cfg.user.name}`;
  const UNDO = `qc-review-undo:${cfg.user.name}`;
  // One calendar for every page and both languages: plant time as 2026-03-02 14:20:05, the
  // dashboard's and the report's format (inspection/analytics/plant_time.py). Swedish is the
  // locale whose Intl format is exactly that; the zone is the plant's, not the browser's.
  const when = new Intl.DateTimeFormat("sv-SE", {
    timeZone: cfg.timezone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });

  let items = [];          // [{inspection, review}] in queue order
  let cursor = null;       // next page of the queue
  let remaining = 0;       // what the filter selects, as the server counted, adjusted locally
  let current = -1;        // index of the open item
  let work = null;         // the open item's decision being made
  let selected = -1;       // selected box (index into the model's detections)
  let showBoxes = true;
  let showReference = false;
  let zoom = {scale: 1, x: 0, y: 0};
  let mode = null;         // null, "draw", "picker", "help", "bulk", "note"
  let imageReady = false;  // the open frame's image has loaded: only then are decisions taken
  let draft = null;        // the missed-defect box being drawn with the keyboard: [x1, y1, x2, y2]
  let pickerDone = null;
  let retryTimer = null;
  let flushing = false;
  const sending = new Set(); // inspection ids with a decision in the outbox

  const load = (key) => { try { return JSON.parse(localStorage.getItem(key)) || []; } catch (e) { return []; } };
  const store = (key, value) => localStorage.setItem(key, JSON.stringify(value));
  const newId = () => Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
  const fmt = (iso) => when.format(new Date(iso));

  // What a reviewer reads for each stored code (the codes stay in the API and the trail).
  const WORDS = {
    undecided: t("not decided yet"), confirmed: t("real defect"), false_alarm: t("not a defect"),
    wrong_class: t("defect of another class"), missed: t("missed defect"),
  };
  const FRAME_WORDS = {
    defect: t("Defect"), false_alarm: t("False alarm"), retracted: t("undone (back in the queue)"),
    ng_confirmed: t("NG confirmed"), ok_released: t("OK released"),
  };
  const DECISION_KEYS = new Set(["d", "f", "c", "x", "w", "m", "g", "o"]);

  // The rule that flagged the frame, in words (the rule's own text stays in the tooltip).
  function ruleInWords(rule) {
    let m = /^(.+): (\d+) at or above fail_conf ([\d.]+) \(best ([\d.]+)\), (\d+) tolerated$/.exec(rule);
    if (m) {
      return t("{count} {class} found with confidence {fail} or more (best {best}); {max} allowed")
        .replace("{count}", m[2]).replace("{class}", m[1]).replace("{fail}", m[3]).replace("{best}", m[4])
        .replace("{max}", m[5]);
    }
    m = /^(.+): confidence ([\d.]+) in the review band \[([\d.]+), ([\d.]+)\)$/.exec(rule);
    if (m) {
      return t("{class} at confidence {conf}: too unsure to pass or fail (between {low} and {high}), a person decides")
        .replace("{class}", m[1]).replace("{conf}", m[2]).replace("{low}", m[3]).replace("{high}", m[4]);
    }
    if (rule.startsWith("cannot align to reference")) return t("the frame could not be lined up with its reference image");
    return rule;
  }

  // -- talking to the API ----------------------------------------------------------------

  async function api(method, url, body) {
    const response = await fetch(url, {
      method, credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": cfg.csrf, "Accept": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return {status: response.status, ok: response.ok, data};
  }

  function filterQuery() {
    const form = new FormData($("filters"));
    const query = new URLSearchParams();
    for (const [name, value] of form.entries()) {
      if (!value) continue;
      // From/To are typed as plant time, "2026-03-02" or "2026-03-02 14:20": the API reads a
      // time without an offset as plant time; a day alone means its start (From) or end (To).
      const plant = (name === "since" || name === "until") ? String(value).trim().replace(" ", "T") : value;
      query.set(name, plant.length === 10 && (name === "since" || name === "until")
        ? `${plant}T${name === "since" ? "00:00:00" : "23:59:59"}` : plant);
    }
    return query;
  }

  // -- the outbox: decisions survive reloads and dropped connections --------------------

  function showUnsaved(extra) {
    const outbox = load(OUTBOX);
    sending.clear();
    outbox.forEach((entry) => sending.add(entry.inspection_id));
    const badge = $("unsaved");
    badge.hidden = outbox.length === 0 && !extra;
    badge.textContent = extra || `${outbox.length} ${t("unsaved")}`;
    if (outbox.length && !extra) badge.textContent += ` · ${t("retrying")}`;
    document.querySelectorAll("#queue li").forEach((li) => li.classList.toggle("unsaved", sending.has(li.dataset.id)));
  }

  function enqueue(inspectionId, body) {
    const outbox = load(OUTBOX);
    outbox.push({inspection_id: inspectionId, body});
    store(OUTBOX, outbox);
    showUnsaved();
    flush();
  }

  async function flush() {
    if (flushing) return;
    flushing = true;
    clearTimeout(retryTimer);
    try {
      while (true) {
        const outbox = load(OUTBOX);
        if (!outbox.length) break;
        const entry = outbox[0];
        let result;
        try {
          result = await api("POST", `/v1/inspections/${entry.inspection_id}/reviews`, entry.body);
        } catch (e) {
          result = null; // the network is down: keep it and retry
        }
        if (result && (result.ok || (result.status >= 400 && result.status < 500 && ![401, 403, 408, 429].includes(result.status)))) {
          const rest = load(OUTBOX).filter((e) => e.body.client_id !== entry.body.client_id);
          store(OUTBOX, rest);
          const item = items.find((i) => i.inspection.id === entry.inspection_id);
          if (result.ok && item) item.review = result.data;
          if (!result.ok) setStatus(`${t("Refused")}: ${result.data && result.data.detail}`, true);
          showUnsaved();
          renderItemMark(entry.inspection_id);
          continue;
        }
        const signedOut = result && (result.status === 401 || result.status === 403);
        showUnsaved(signedOut ? `${outbox.length} ${t("unsaved")} · ${t("sign in again")}` : null);
        retryTimer = setTimeout(flush, signedOut ? 15000 : 2000);
        break;
      }
    } finally {
      flushing = false;
    }
    if (current >= 0 && items[current]) loadHistory(items[current].inspection.id);
  }

  // -- the queue ---------------------------------------------------------------------------

  async function loadQueue(more) {
    const query = filterQuery();
    query.set("limit", "50");
    if (more && cursor) query.set("cursor", cursor);
    const result = await api("GET", `/v1/reviews?${query}`);
    if (!result.ok) { setStatus(result.data ? result.data.detail : t("cannot load the queue"), true); return; }
    remaining = result.data.remaining;
    cursor = result.data.next_cursor;
    items = more ? items.concat(result.data.items) : result.data.items;
    // Decisions still in the outbox count as made.
    const pending = new Set(load(OUTBOX).map((e) => e.inspection_id));
    if (query.get("state") !== "reviewed" && query.get("state") !== "all") {
      const counted = items.filter((i) => pending.has(i.inspection.id) && !i.review).length;
      remaining = Math.max(0, remaining - counted);
    }
    renderQueue();
    if (!more) open(items.length ? 0 : -1);
  }

  function latestBody(item) {
    const outbox = load(OUTBOX).filter((e) => e.inspection_id === item.inspection.id);
    if (outbox.length) return outbox[outbox.length - 1].body;
    return item.review;
  }

  function decisionOf(item) {
    const body = latestBody(item);
    return body && body.decision !== "retracted" ? body.decision : null;
  }

  function renderQueue() {
    const list = $("queue");
    list.textContent = "";
    items.forEach((item, index) => {
      const li = document.createElement("li");
      li.dataset.id = item.inspection.id;
      li.tabIndex = -1;
      const i = item.inspection;
      li.innerHTML = `<span class="verdict ${i.verdict}"></span><span class="when"></span>` +
        `<span class="station"></span><span class="part"></span><span class="mark"></span>`;
      li.querySelector(".verdict").textContent = i.verdict;
      li.querySelector(".when").textContent = fmt(i.created_at);
      li.querySelector(".station").textContent = i.station;
      li.querySelector(".part").textContent = i.part_id || "";
      li.addEventListener("click", () => open(index));
      list.appendChild(li);
    });
    if (cursor) {
      const li = document.createElement("li");
      li.className = "more";
      li.textContent = t("more…");
      li.addEventListener("click", () => loadQueue(true));
      list.appendChild(li);
    }
    items.forEach((item) => renderItemMark(item.inspection.id));
    $("remaining").textContent = remaining;
    $("empty").hidden = items.length > 0;
    showUnsaved();
  }

  function renderItemMark(id) {
    const li = document.querySelector(`#queue li[data-id="${id}"]`);
    const item = items.find((i) => i.inspection.id === id);
    if (!li || !item) return;
    const decision = decisionOf(item);
    li.classList.toggle("decided", !!decision);
    li.dataset.decision = decision || "";
    li.querySelector(".mark").textContent = decision ? t(decision === "defect" ? "Defect" : "False alarm") : "";
    li.classList.toggle("unsaved", sending.has(id));
  }

  // -- the frame ---------------------------------------------------------------------------

  function open(index) {
    current = index;
    selected = -1;
    document.querySelectorAll("#queue li").forEach((li, i) => li.classList.toggle("current", i === index));
    $("frame").hidden = index < 0;
    if (index < 0) return;
    const item = items[index];
    const li = document.querySelectorAll("#queue li")[index];
    if (li) li.scrollIntoView({block: "nearest"});
    const body = latestBody(item);
    work = {
      decision: body && body.decision !== "retracted" ? body.decision : null,
      boxes: {}, drawn: [], disposition: body ? body.disposition : null, note: body ? body.note || "" : "",
    };
    if (body && body.decision !== "retracted") {
      for (const box of body.boxes || []) {
        if (box.decision === "missed") work.drawn.push({class: box.class, xyxy: box.xyxy});
        else if (box.detection !== null && box.detection !== undefined && box.decision !== "undecided") {
          work.boxes[box.detection] = {decision: box.decision, class: box.class};
        }
      }
      // A body sent before boxes were named one by one: the frame decision decides them.
      if (!(body.boxes || []).length) fillBoxes(work.decision === "false_alarm" ? "false_alarm" : "confirmed", item);
    }
    $("note").value = work.note;
    cancelDraw();
    if (mode === "picker") closePicker(null);
    const i = item.inspection;
    showReference = false;
    $("stage").classList.remove("reference");
    showImage(i.image_stored ? `/review/image/${i.id}` : "");
    $("image").alt = `${i.station} ${i.part_id || ""}`;
    $("boxes").setAttribute("viewBox", `0 0 ${i.width} ${i.height}`);
    $("boxes").setAttribute("preserveAspectRatio", "none");
    resetZoom();
    renderFacts(item);
    renderBoxes();
    loadHistory(i.id);
    setStatus("");
    history.replaceState(null, "", `${location.pathname}${location.search}#${i.id}`);
  }

  // The image, and whether decisions may be taken: not before it has loaded (what was not seen
  // cannot be judged). A frame without a stored image can be skipped or bulk-decided, not judged.
  function showImage(url) {
    const image = $("image");
    imageReady = false;
    setDecisionsEnabled(false);
    $("loading").textContent = url ? t("Loading the image…") : t("This frame's image was not stored; it cannot be judged here.");
    $("loading").hidden = false;
    image.style.visibility = "hidden";
    if (!url) { image.removeAttribute("src"); return; }
    image.src = url;
    if (image.complete && image.naturalWidth > 0) imageLoaded();
  }

  function imageLoaded() {
    const image = $("image");
    if (!image.getAttribute("src") || !image.naturalWidth) return;
    imageReady = true;
    setDecisionsEnabled(true);
    $("loading").hidden = true;
    image.style.visibility = "";
    fitImage();
    fetchAhead();
  }

  // The next frame's image, fetched while this one is judged: it shows at once when its turn
  // comes, and even when the connection drops meanwhile (the browser keeps it).
  function fetchAhead() {
    const next = items[current + 1];
    if (!next || !next.inspection.image_stored) return;
    const ahead = new Image();
    ahead.addEventListener("load", () => { $("frame").dataset.ahead = next.inspection.id; });
    ahead.src = `/review/image/${next.inspection.id}`;
    fetchAhead.kept = ahead;  // held, so the browser does not drop it before it loads
  }

  function setDecisionsEnabled(enabled) {
    document.querySelectorAll("#decide button[data-key]").forEach((button) => {
      if (DECISION_KEYS.has(button.dataset.key)) button.disabled = !enabled;
    });
  }

  // The whole frame in sight: the image scaled (up or down) to the stage, boxes drawn over it.
  function fitImage() {
    if (current < 0 || !items[current]) return;
    const i = items[current].inspection;
    const image = $("image");
    const width = image.naturalWidth || i.width, height = image.naturalHeight || i.height;
    const stage = $("stage");
    const scale = Math.min(stage.clientWidth / width, stage.clientHeight / height);
    if (!(scale > 0)) return;
    image.style.width = `${Math.floor(width * scale)}px`;
    image.style.height = `${Math.floor(height * scale)}px`;
    renderBoxes();
  }

  $("image").addEventListener("load", imageLoaded);
  $("image").addEventListener("error", () => {
    if (!$("image").getAttribute("src")) return;
    imageReady = false;
    setDecisionsEnabled(false);
    $("loading").textContent = t("The image could not be loaded; decisions wait until it shows (J: next frame).");
    $("loading").hidden = false;
  });
  window.addEventListener("resize", fitImage);

  function renderFacts(item) {
    const i = item.inspection;
    const facts = [
      [t("Verdict"), i.verdict], [t("Why flagged"), ruleInWords(i.rule)], [t("Part"), i.part_id || "—"],
      [t("Station"), i.station], [t("Time"), fmt(i.created_at)],
      [t("Model"), `${i.model.name}@${i.model.version}`], [t("Rules"), `v${i.rules_version}`],
      ...(i.reference ? [[t("Reference"), `v${i.reference.version} · ${t("alignment")} ${i.reference.alignment_score}`]] : []),
      [t("Position"), `${current + 1} / ${items.length}${cursor ? "+" : ""}`],
    ];
    const dl = $("facts");
    dl.textContent = "";
    for (const [name, value] of facts) {
      const dt = document.createElement("dt"); dt.textContent = name;
      const dd = document.createElement("dd"); dd.textContent = value;
      if (name === t("Verdict")) dd.className = `verdict ${value}`;
      if (name === t("Why flagged")) { dd.title = i.rule; dd.id = "rule"; }
      dl.append(dt, dd);
    }
    // Where this frame went after review: its Label Studio task, the dataset versions holding
    // its labels and the models trained on them (GET /v1/inspections/{id}/trail).
    const dt = document.createElement("dt"); dt.textContent = t("Trail");
    const dd = document.createElement("dd");
    const link = document.createElement("a");
    link.href = `/v1/inspections/${encodeURIComponent(i.id)}/trail`;
    link.target = "_blank"; link.rel = "noopener"; link.id = "trail"; link.textContent = t("datasets and models");
    dd.append(link);
    dl.append(dt, dd);
  }

  // The golden part the frame was judged against, in the frame's place (R again: the frame):
  // what differs between the two is what the model looked at.
  function toggleReference() {
    const i = items[current].inspection;
    if (!i.reference) { setStatus(t("This frame was not judged against a reference image."), true); return; }
    showReference = !showReference;
    showImage(showReference ? `/review/reference/${i.id}` : `/review/image/${i.id}`);
    $("stage").classList.toggle("reference", showReference);
    setStatus(showReference ? t("Showing the reference image (R: back to the frame).") : "");
  }

  function boxDecision(index) {
    return work.boxes[index] || null;  // null: not decided yet
  }

  // Every model box not decided one by one gets `decision` (D confirms them, F rejects all).
  function fillBoxes(decision, item) {
    (item || items[current]).inspection.detections.forEach((d, index) => {
      const given = work.boxes[index];
      if (decision === "false_alarm" || !given || given.decision === "undecided") {
        work.boxes[index] = {decision, class: d.class};
      }
    });
  }

  function renderBoxes() {
    const svg = $("boxes");
    svg.textContent = "";
    svg.style.display = showBoxes ? "" : "none";
    const item = items[current];
    const i = item.inspection;
    // Labels are sized for the screen (about 13 px whatever the image's size) and placed where
    // they overlap no other label: above the box, below it, inside it, or stacked beside.
    const shown = $("image").getBoundingClientRect().width || i.width;
    const font = Math.max(4, 13 * i.width / shown);
    const placed = [];
    const overlaps = (r) => placed.some((p) => r.x < p.x + p.w && p.x < r.x + r.w && r.y < p.y + p.h && p.y < r.y + r.h);
    const list = $("box-list");
    list.textContent = "";
    const draw = (xyxy, cls, label, key) => {
      const [x1, y1, x2, y2] = xyxy;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", x1); rect.setAttribute("y", y1);
      rect.setAttribute("width", Math.max(1, x2 - x1)); rect.setAttribute("height", Math.max(1, y2 - y1));
      rect.setAttribute("class", cls);
      rect.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(rect);
      if (!label) return;
      const text = `${key} ${label}`;
      const w = text.length * font * 0.62 + font * 0.4, h = font * 1.25;
      const fitX = (x) => Math.max(0, Math.min(i.width - w, x));
      const candidates = [
        {x: fitX(x1), y: y1 - h - 1}, {x: fitX(x1), y: y2 + 1}, {x: fitX(x1), y: y1 + 1},
        {x: fitX(x2 + 2), y: y1}, {x: fitX(x1 - w - 2), y: y1},
      ].filter((c) => c.y >= 0 && c.y + h <= i.height);
      let spot = candidates.find((c) => !overlaps({...c, w, h}));
      if (!spot) {  // crowded: stack below the others
        spot = {x: fitX(x1), y: Math.max(0, y1)};
        while (overlaps({...spot, w, h}) && spot.y + h < i.height) spot.y += h;
      }
      placed.push({...spot, w, h});
      const plate = document.createElementNS(SVG, "rect");
      plate.setAttribute("x", spot.x); plate.setAttribute("y", spot.y);
      plate.setAttribute("width", w); plate.setAttribute("height", h);
      plate.setAttribute("class", "plate");
      const label_ = document.createElementNS(SVG, "text");
      label_.setAttribute("x", spot.x + font * 0.2); label_.setAttribute("y", spot.y + font);
      label_.setAttribute("font-size", font);
      label_.setAttribute("class", `${cls} label`);
      label_.textContent = text;
      svg.append(plate, label_);
    };
    i.detections.forEach((d, index) => {
      const state = boxDecision(index);
      const decision = state ? state.decision : "undecided";
      const cls = `box ${decision}${index === selected ? " selected" : ""}`;
      const name = decision === "wrong_class" ? `${d.class}→${state.class}` : d.class;
      draw(d.box, cls, `${name} ${d.confidence.toFixed(2)}`, index + 1);
      const li = document.createElement("li");
      li.className = cls;
      li.textContent = `${index + 1}. ${name} ${d.confidence.toFixed(2)} — ${WORDS[decision] || decision}`;
      li.addEventListener("click", () => { selected = index; renderBoxes(); });
      list.appendChild(li);
    });
    work.drawn.forEach((box, n) => {
      draw(box.xyxy, "box missed", `${box.class} (${WORDS.missed})`, "+");
      const li = document.createElement("li");
      li.className = "box missed";
      li.textContent = `+${n + 1}. ${box.class} — ${WORDS.missed}`;
      list.appendChild(li);
    });
    if (draft) {
      draw(draft, "box drawing", null, "");
      const li = document.createElement("li");
      li.className = "box missed drawing";
      li.textContent = `+ ${t("new box")}: ${draft.map((v) => Math.round(v)).join(", ")}`;
      list.appendChild(li);
    }
  }

  async function loadHistory(id) {
    const result = await api("GET", `/v1/inspections/${id}/reviews`);
    if (!result.ok || !items[current] || items[current].inspection.id !== id) return;
    const list = $("history");
    list.textContent = "";
    for (const review of result.data.history.slice().reverse()) {
      const li = document.createElement("li");
      const parts = [fmt(review.created_at), review.reviewer, FRAME_WORDS[review.decision] || review.decision];
      if (review.disposition) parts.push(FRAME_WORDS[review.disposition] || review.disposition);
      const undecided = (review.boxes || []).filter((b) => b.decision === "undecided").length;
      if (undecided) parts.push(`${undecided} ${WORDS.undecided}`);
      if (review.note) parts.push(`“${review.note}”`);
      li.textContent = parts.join(" · ");
      list.appendChild(li);
    }
  }

  // -- deciding ----------------------------------------------------------------------------

  function bodyOfWork() {
    const item = items[current];
    const boxes = [];
    item.inspection.detections.forEach((d, index) => {
      const state = boxDecision(index);
      boxes.push({decision: state ? state.decision : "undecided", detection: index,
                  class: state ? state.class || d.class : d.class});
    });
    for (const box of work.drawn) boxes.push({decision: "missed", class: box.class, xyxy: box.xyxy});
    return {client_id: newId(), decision: work.decision, boxes, disposition: work.disposition, note: work.note};
  }

  function save(message) {
    const item = items[current];
    const before = latestBody(item);
    const wasOpen = !decisionOf(item);
    const body = bodyOfWork();
    if (before && sameDecision(strip(before), strip(body))) {
      renderBoxes();
      setStatus(t("Already saved; nothing changed."));
      return;  // a key pressed twice is not a second row in the trail
    }
    const undo = load(UNDO);
    undo.push({inspection_id: item.inspection.id, before: before ? strip(before) : null, was_open: wasOpen});
    store(UNDO, undo.slice(-200));
    enqueue(item.inspection.id, body);
    if (wasOpen && stateFilter() === "unreviewed") remaining = Math.max(0, remaining - 1);
    $("remaining").textContent = remaining;
    renderItemMark(item.inspection.id);
    renderBoxes();
    setStatus(message || t("Saved on this device; sending…"));
  }

  // The server completes boxes (classes, the frame decision for boxes not named), so compare
  // what it would store: frame decision, disposition, note, each box's decision and class.
  function sameDecision(a, b) {
    const boxes = (body) => JSON.stringify(body.boxes.map((x) => [x.decision, x.detection ?? null, x.class,
      x.decision === "missed" ? x.xyxy.map((v) => Math.round(v)) : null]));
    const disposition = (body) => body.disposition || (body.decision === "defect" ? "ng_confirmed"
      : body.decision === "false_alarm" ? "ok_released" : null);
    return a.decision === b.decision && disposition(a) === disposition(b) && (a.note || "") === (b.note || "")
      && boxes(a) === boxes(b);
  }

  function strip(body) {
    return {decision: body.decision, note: body.note || "", disposition: body.disposition || null,
            boxes: (body.boxes || []).map((b) => b.decision === "missed"
              ? {decision: "missed", class: b.class, xyxy: b.xyxy}
              : {decision: b.decision, detection: b.detection, class: b.class})};
  }

  function stateFilter() { return new FormData($("filters")).get("state") || "unreviewed"; }

  // The frame decision a box correction implies: a defect while any box is (or may be, not
  // decided yet) a defect or one was drawn; a false alarm once every box is not a defect.
  function derivedDecision() {
    const item = items[current];
    const anyDefect = work.drawn.length > 0 || item.inspection.detections.some((d, index) => {
      const state = work.boxes[index];
      return !state || state.decision !== "false_alarm";
    });
    return anyDefect ? "defect" : "false_alarm";
  }

  // Decisions wait for the image: what was not seen cannot be judged.
  function canDecide() {
    if (imageReady) return true;
    setStatus(t("The image has not loaded yet; decide when you can see it."), true);
    return false;
  }

  function decideFrame(decision) {
    if (decision === "false_alarm" && work.drawn.length) {
      setStatus(t("A false alarm cannot keep a drawn defect; undo it first."), true);
      return;
    }
    work.decision = decision;
    // A defect keeps the per-box corrections made so far (the boxes not decided yet become
    // real defects); a false alarm makes every box not a defect.
    fillBoxes(decision === "false_alarm" ? "false_alarm" : "confirmed");
    work.disposition = decision === "defect" ? "ng_confirmed" : "ok_released";
    work.note = $("note").value;
    save(decision === "defect" ? t("Defect") : t("False alarm"));
    next();
  }

  function decideBox(decision, cls) {
    const item = items[current];
    if (selected < 0 || selected >= item.inspection.detections.length) {
      setStatus(t("Select a box first (Tab or 1–9)."), true);
      return;
    }
    work.boxes[selected] = {decision, class: cls || item.inspection.detections[selected].class};
    work.decision = derivedDecision();
    work.disposition = work.decision === "defect" ? "ng_confirmed" : "ok_released";
    work.note = $("note").value;
    save();
  }

  function setDisposition(disposition) {
    if (!work.decision && disposition === "ok_released") fillBoxes("false_alarm");
    work.decision = work.decision || (disposition === "ng_confirmed" ? "defect" : "false_alarm");
    work.disposition = disposition;
    work.note = $("note").value;
    save(t(disposition));
  }

  function undo() {
    const stack = load(UNDO);
    const last = stack.pop();
    if (!last) { setStatus(t("Nothing to undo."), true); return; }
    store(UNDO, stack);
    const body = last.before && last.before.decision !== "retracted"
      ? {...last.before, client_id: newId()} : {decision: "retracted", client_id: newId(), boxes: [], note: ""};
    enqueue(last.inspection_id, body);
    const index = items.findIndex((i) => i.inspection.id === last.inspection_id);
    if (last.was_open && stateFilter() === "unreviewed") remaining += 1;
    $("remaining").textContent = remaining;
    renderItemMark(last.inspection_id);
    if (index >= 0) open(index);
    else bringBack(last.inspection_id);  // e.g. decided, then the queue reloaded without it
    setStatus(t("Undone."));
  }

  // The frame whose decision was undone, put back in the queue before the current one and
  // opened: whoever undoes a decision expects to see that frame again.
  async function bringBack(id) {
    const result = await api("GET", `/v1/inspections/${encodeURIComponent(id)}/reviews`);
    if (!result.ok) { setStatus(result.data ? result.data.detail : t("cannot load the frame"), true); return; }
    const at = Math.max(0, Math.min(current, items.length));
    items.splice(at, 0, {inspection: result.data.inspection, review: result.data.latest});
    renderQueue();
    open(at);
  }

  function next() {
    if (current + 1 < items.length) open(current + 1);
    else if (cursor) loadQueue(true).then(() => open(Math.min(current + 1, items.length - 1)));
    else setStatus(t("End of the queue."));
  }

  function previous() { if (current > 0) open(current - 1); }

  function setStatus(text, error) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", !!error);
  }

  // -- class picker, drawing, zoom ---------------------------------------------------------

  function pick(title, done) {
    const classes = cfg.classes.length ? cfg.classes
      : Array.from(new Set(items.flatMap((i) => i.inspection.detections.map((d) => d.class)))).sort();
    $("picker-title").textContent = title;
    const list = $("picker-list");
    list.textContent = "";
    classes.slice(0, 9).forEach((name, n) => {
      const li = document.createElement("li");
      li.innerHTML = "<kbd></kbd> <span></span>";
      li.querySelector("kbd").textContent = n + 1;
      li.querySelector("span").textContent = name;
      li.addEventListener("click", () => closePicker(name));
      list.appendChild(li);
    });
    pickerDone = (n) => classes[n];
    if (mode === "draw") cancelDraw();
    mode = "picker";
    $("picker").hidden = false;
    $("picker").dataset.done = "";
    pick.callback = done;
  }

  function closePicker(name) {
    $("picker").hidden = true;
    mode = null;
    const callback = pick.callback;
    pick.callback = null;
    if (callback) callback(name);  // null: cancelled
  }

  function toImage(event) {
    const rect = $("boxes").getBoundingClientRect();
    const i = items[current].inspection;
    return [(event.clientX - rect.left) / rect.width * i.width, (event.clientY - rect.top) / rect.height * i.height];
  }

  // -- drawing a missed defect: with the mouse (drag) or the keyboard alone -----------------
  //
  // M puts a box in the middle of the frame; the arrow keys move it, Shift+arrows make it wider
  // or taller (→ ↓) and narrower or shorter (← ↑), in steps of a 40th of the frame, finer when
  // zoomed in (+); Enter keeps it and asks for the class, Esc drops it. A mouse drag draws it.

  function startDraw() {
    const i = items[current].inspection;
    const side = Math.min(i.width, i.height) / 6;
    draft = [i.width / 2 - side / 2, i.height / 2 - side / 2, i.width / 2 + side / 2, i.height / 2 + side / 2];
    mode = "draw";
    $("stage").classList.add("drawing");
    renderBoxes();
    setStatus(t("New box: arrow keys move it, Shift+arrows size it (or drag with the mouse); Enter keeps it, Esc drops it."));
  }

  function cancelDraw() {
    draft = null;
    if (mode === "draw") mode = null;
    $("stage").classList.remove("drawing");
  }

  function moveDraft(key, resize) {
    const i = items[current].inspection;
    const step = Math.max(1, Math.round(Math.min(i.width, i.height) / 40 / zoom.scale));
    const dx = key === "ArrowRight" ? step : key === "ArrowLeft" ? -step : 0;
    const dy = key === "ArrowDown" ? step : key === "ArrowUp" ? -step : 0;
    let [x1, y1, x2, y2] = draft;
    if (resize) {
      x2 = Math.max(x1 + 2, Math.min(i.width, x2 + dx));
      y2 = Math.max(y1 + 2, Math.min(i.height, y2 + dy));
    } else {
      const w = x2 - x1, h = y2 - y1;
      x1 = Math.max(0, Math.min(i.width - w, x1 + dx)); y1 = Math.max(0, Math.min(i.height - h, y1 + dy));
      x2 = x1 + w; y2 = y1 + h;
    }
    draft = [x1, y1, x2, y2];
    renderBoxes();
  }

  function finishDraw(box) {
    const i = items[current].inspection;
    const clamp = (v, hi) => Math.max(0, Math.min(hi, v));
    const xyxy = [clamp(Math.min(box[0], box[2]), i.width), clamp(Math.min(box[1], box[3]), i.height),
                  clamp(Math.max(box[0], box[2]), i.width), clamp(Math.max(box[1], box[3]), i.height)]
      .map((v) => Math.round(v * 10) / 10);
    cancelDraw();
    if (xyxy[2] - xyxy[0] < 2 || xyxy[3] - xyxy[1] < 2) { renderBoxes(); setStatus(t("Too small; press M and drag again."), true); return; }
    draft = xyxy;  // shown while the class is picked
    renderBoxes();
    pick(t("Class of the missed defect"), (name) => {
      draft = null;
      if (!name) { renderBoxes(); return; }
      work.drawn.push({class: name, xyxy});
      work.decision = "defect";
      work.disposition = "ng_confirmed";
      work.note = $("note").value;
      save(t("Missed defect"));
    });
  }

  function toImage(event) {
    const rect = $("boxes").getBoundingClientRect();
    const i = items[current].inspection;
    return [(event.clientX - rect.left) / rect.width * i.width, (event.clientY - rect.top) / rect.height * i.height];
  }

  let dragStart = null;
  $("stage").addEventListener("pointerdown", (event) => {
    if (current < 0) return;
    event.preventDefault();
    if (mode === "draw") {
      const [x, y] = toImage(event);
      dragStart = [x, y];
      draft = [x, y, x, y];
      renderBoxes();
    } else {
      dragStart = {x: event.clientX - zoom.x, y: event.clientY - zoom.y, pan: true};
    }
    $("stage").setPointerCapture(event.pointerId);
  });
  $("stage").addEventListener("pointermove", (event) => {
    if (!dragStart) return;
    if (dragStart.pan) {
      zoom.x = event.clientX - dragStart.x; zoom.y = event.clientY - dragStart.y; applyZoom();
      return;
    }
    const [x, y] = toImage(event);
    draft = [Math.min(x, dragStart[0]), Math.min(y, dragStart[1]), Math.max(x, dragStart[0]), Math.max(y, dragStart[1])];
    renderBoxes();
  });
  $("stage").addEventListener("pointerup", (event) => {
    if (!dragStart) return;
    const start = dragStart;
    dragStart = null;
    if (start.pan) return;
    const [x, y] = toImage(event);
    finishDraw([start[0], start[1], x, y]);
  });

  function applyZoom() {
    $("zoom").style.transform = `translate(${zoom.x}px, ${zoom.y}px) scale(${zoom.scale})`;
  }
  function resetZoom() { zoom = {scale: 1, x: 0, y: 0}; applyZoom(); }
  function zoomBy(factor) {
    const stage = $("stage").getBoundingClientRect();
    const cx = stage.width / 2, cy = stage.height / 2;
    const scale = Math.max(1, Math.min(8, zoom.scale * factor));
    zoom.x = cx - (cx - zoom.x) * (scale / zoom.scale);
    zoom.y = cy - (cy - zoom.y) * (scale / zoom.scale);
    zoom.scale = scale;
    if (scale === 1) { zoom.x = 0; zoom.y = 0; }
    applyZoom();
  }
  $("stage").addEventListener("wheel", (event) => { event.preventDefault(); zoomBy(event.deltaY < 0 ? 1.25 : 0.8); }, {passive: false});

  // -- bulk --------------------------------------------------------------------------------

  function openBulk() {
    $("bulk-text").textContent = t("Decide all {n} frames the filter selects now:").replace("{n}", remaining);
    $("bulk").hidden = false;
    mode = "bulk";
  }
  async function bulk(decision) {
    $("bulk").hidden = true;
    mode = null;
    const result = await api("POST", `/v1/reviews/bulk?${filterQuery()}`, {decision, expected: remaining});
    if (!result.ok) { setStatus(`${t("Refused")}: ${result.data && result.data.detail}`, true); await loadQueue(false); return; }
    await loadQueue(false);
    setStatus(t("{n} frames decided.").replace("{n}", result.data.reviewed));
  }
  $("bulk-button").addEventListener("click", openBulk);
  $("bulk-false").addEventListener("click", () => bulk("false_alarm"));
  $("bulk-defect").addEventListener("click", () => bulk("defect"));
  $("bulk-cancel").addEventListener("click", () => { $("bulk").hidden = true; mode = null; });

  // -- keys --------------------------------------------------------------------------------

  function toggleHelp() {
    const help = $("help");
    help.hidden = !help.hidden;
    mode = help.hidden ? null : "help";
  }
  $("help-button").addEventListener("click", toggleHelp);
  document.querySelectorAll(".actions button[data-key]").forEach((button) =>
    button.addEventListener("click", () => handleKey(button.dataset.key)));

  function handleKey(key, event) {
    const item = items[current];
    if (!item && !["?", "a", "A"].includes(key)) return false;
    if (DECISION_KEYS.has(key) && !canDecide()) return true;
    switch (key) {
      case "j": case "ArrowDown": case "ArrowRight": next(); return true;
      case "k": case "ArrowUp": case "ArrowLeft": previous(); return true;
      case "d": decideFrame("defect"); return true;
      case "f": decideFrame("false_alarm"); return true;
      case "c": decideBox("confirmed"); return true;
      case "x": decideBox("false_alarm"); return true;
      case "w":
        if (selected < 0) { setStatus(t("Select a box first (Tab or 1–9)."), true); return true; }
        pick(t("The right class"), (name) => { if (name) decideBox("wrong_class", name); });
        return true;
      case "m": startDraw(); return true;
      case "g": setDisposition("ng_confirmed"); return true;
      case "o": setDisposition("ok_released"); return true;
      case "u": case "z": undo(); return true;
      case "n": mode = "note"; $("note").focus(); return true;
      case "b": showBoxes = !showBoxes; renderBoxes(); return true;
      case "r": toggleReference(); return true;
      case "+": case "=": zoomBy(1.25); return true;
      case "-": zoomBy(0.8); return true;
      case "0": resetZoom(); return true;
      case "a": case "A": openBulk(); return true;
      case "?": toggleHelp(); return true;
      case "Tab": {
        const n = item.inspection.detections.length;
        if (!n) return true;
        selected = event && event.shiftKey ? (selected - 1 + n) % n : (selected + 1) % n;
        renderBoxes();
        return true;
      }
      default:
        if (/^[1-9]$/.test(key) && Number(key) <= item.inspection.detections.length) {
          selected = Number(key) - 1; renderBoxes(); return true;
        }
    }
    return false;
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey && event.key === "z" && mode !== "note") { event.preventDefault(); undo(); return; }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (mode === "note") {
      if (event.key === "Escape") { mode = null; $("note").blur(); }
      else if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        mode = null; $("note").blur();
        if (!canDecide()) return;
        work.note = $("note").value;
        work.decision = work.decision || derivedDecision();
        save(t("Note saved."));
      }
      return;
    }
    const target = event.target;
    if (target && ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (mode === "picker") {
      event.preventDefault();
      if (event.key === "Escape") closePicker(null);
      else if (/^[1-9]$/.test(event.key) && pickerDone(Number(event.key) - 1)) closePicker(pickerDone(Number(event.key) - 1));
      return;
    }
    if (mode === "help") { if (event.key === "Escape" || event.key === "?") { event.preventDefault(); toggleHelp(); } return; }
    if (mode === "bulk") {
      event.preventDefault();
      if (event.key === "Escape") { $("bulk").hidden = true; mode = null; }
      else if (event.key === "f") bulk("false_alarm");
      else if (event.key === "d") bulk("defect");
      return;
    }
    if (mode === "draw") {
      if (event.key === "Escape") { cancelDraw(); renderBoxes(); setStatus(""); event.preventDefault(); return; }
      if (event.key === "Enter") { event.preventDefault(); finishDraw(draft); return; }
      if (event.key.startsWith("Arrow")) { event.preventDefault(); moveDraft(event.key, event.shiftKey); return; }
      if (!["+", "=", "-", "0", "b", "B"].includes(event.key)) { event.preventDefault(); return; }
    }
    if (handleKey(event.key.length === 1 ? event.key.toLowerCase() : event.key, event)) {
      event.preventDefault();
    }
  });
  $("note").addEventListener("focus", () => { mode = "note"; });
  $("note").addEventListener("blur", () => { if (mode === "note") mode = null; });

  // -- start -------------------------------------------------------------------------------

  function fillFilters() {
    const form = $("filters");
    const stations = form.elements.station;
    for (const id of cfg.stations) stations.add(new Option(id, id));
    const classes = form.elements["class"];
    for (const name of cfg.classes) classes.add(new Option(name, name));
    const query = new URLSearchParams(location.search);
    for (const element of form.elements) {
      if (element.name && query.has(element.name)) element.value = query.get(element.name);
    }
    // The folded filters show how many of them are set, so a narrowed queue is never a surprise.
    const countMore = () => {
      const set = Array.from($("more-filters").querySelectorAll("select, input")).filter((e) => e.value).length;
      $("more-count").textContent = set ? String(set) : "";
    };
    countMore();
    form.addEventListener("change", countMore);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      $("more-filters").open = false;
      const query = filterQuery();
      history.replaceState(null, "", `${location.pathname}?${query}`);
      loadQueue(false);
    });
  }

  window.addEventListener("online", flush);
  fillFilters();
  showUnsaved();
  const wanted = location.hash.slice(1);  // read first: opening the first frame rewrites the hash
  loadQueue(false).then(() => {
    const index = items.findIndex((i) => i.inspection.id === wanted);
    if (index > 0) open(index);
    flush();
  });
})();
