// pugmark web UI: the one small script (vendored here, no framework, no CDN). Pages work
// without it; it only opens "surrounding records" in place instead of navigating away.
"use strict";
document.addEventListener("click", async (ev) => {
  const a = ev.target.closest("a.around");
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
  const item = a.closest("li.hit");
  if (!item) return;
  ev.preventDefault();
  const open = item.querySelector(".around-box");
  if (open) { open.remove(); return; }
  const box = document.createElement("div");
  box.className = "around-box";
  box.textContent = "loading…";
  item.appendChild(box);
  try {
    const r = await fetch(a.href, { credentials: "same-origin" });
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const hits = doc.querySelector("ol.hits");
    box.textContent = "";
    const title = document.createElement("div");
    title.className = "muted";
    title.textContent = "Records around it on the same host (±5 min): ";
    const link = document.createElement("a");
    link.href = a.href;
    link.textContent = "open";
    title.appendChild(link);
    box.appendChild(title);
    if (hits) { hits.querySelectorAll(".around-box").forEach((x) => x.remove()); box.appendChild(document.adoptNode(hits)); }
  } catch (e) {
    box.textContent = "could not load: " + e;
  }
});
