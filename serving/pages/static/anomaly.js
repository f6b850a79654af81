// The anomaly map over the frame on the review page, for frames judged by a good-only model
// (GET /review/anomaly/{id}: a transparent PNG, warm where the frame is unlike good).
//
// Kept apart from review.js: it only watches which frame #image shows (/review/image/{id}) and,
// while the "Anomaly map" box (#anomaly-toggle) is ticked, lays the map over it inside #zoom,
// so it zooms and pans with the frame. A frame judged by any other model has no map (404): the
// overlay hides and the status line says so. The choice is remembered in this browser.
(function () {
  "use strict";
  const toggle = document.getElementById("anomaly-toggle");
  const image = document.getElementById("image");
  const zoom = document.getElementById("zoom");
  if (!toggle || !image || !zoom) return;
  const config = JSON.parse(document.getElementById("config").textContent || "{}");
  const messages = config.messages || {};
  const t = (text) => messages[text] || text;
  const KEY = "qc.review.anomaly";

  // The filter bar sizes its inputs for text (34 px high); a checkbox sits centred beside its words.
  const label = toggle.closest("label");
  if (label) Object.assign(label.style, {display: "inline-flex", alignItems: "center", gap: "6px"});
  Object.assign(toggle.style, {minHeight: "0", width: "18px", height: "18px", margin: "0"});

  const overlay = document.createElement("img");
  overlay.id = "anomaly";
  overlay.alt = "";
  // Over the frame, the boxes' SVG above it: laid out by the frame alone, never clicked.
  Object.assign(overlay.style, {
    position: "absolute", inset: "0", width: "100%", height: "100%", maxWidth: "none", maxHeight: "none",
    minWidth: "0", pointerEvents: "none",
  });
  zoom.insertBefore(overlay, image.nextSibling);

  // `hidden` and an inline display both: review.css gives every .zoom img display: block,
  // which would win over the hidden attribute alone.
  function show(on) {
    overlay.hidden = !on;
    overlay.style.display = on ? "block" : "none";
  }
  show(false);

  function shownId() {
    const match = /\/review\/image\/([^/?#]+)$/.exec(image.getAttribute("src") || "");
    return match ? match[1] : null;
  }

  function say(text) {
    const status = document.getElementById("status");
    if (status) { status.textContent = text; status.classList.toggle("error", !!text); }
  }

  function update() {
    const id = shownId();
    if (!toggle.checked || !id) {
      show(false);
      overlay.removeAttribute("src");
      return;
    }
    const wanted = `/review/anomaly/${id}`;
    if (overlay.getAttribute("src") !== wanted) {
      show(false);  // never the last frame's map over this one while the new map loads
      overlay.src = wanted;
    } else if (overlay.complete && overlay.naturalWidth) {
      show(true);
    }
  }

  overlay.addEventListener("load", () => show(toggle.checked));
  overlay.addEventListener("error", () => {
    show(false);
    if (toggle.checked && shownId()) say(t("No anomaly map: this frame was not judged by a good-only model."));
  });
  toggle.addEventListener("change", () => {
    try { localStorage.setItem(KEY, toggle.checked ? "1" : "0"); } catch (e) { /* private mode */ }
    toggle.blur();  // the review keys go back to the page
    update();
  });
  // review.js changes #image's src when it opens a frame or shows the reference (R).
  new MutationObserver(update).observe(image, {attributes: true, attributeFilter: ["src"]});
  try { toggle.checked = localStorage.getItem(KEY) === "1"; } catch (e) { /* private mode */ }
  update();
})();
