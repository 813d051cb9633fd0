// The console's only script (served from the service: no CDN, no inline script). Pages
// work without it; it adds a periodic refresh where a page asks for one
// (data-refresh="seconds" on <body>, paused while the tab is hidden) and a confirmation
// before a form that destroys something (class "confirm", data-confirm="question").
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const seconds = Number(document.body.dataset.refresh || 0);
  if (seconds > 0) {
    const note = document.querySelector(".refresh-note");
    if (note) note.textContent = `Refreshed every ${seconds} s.`;
    setInterval(() => {
      if (document.visibilityState === "visible") window.location.reload();
    }, seconds * 1000);
  }
  for (const form of document.querySelectorAll("form.confirm")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm || "Are you sure?")) event.preventDefault();
    });
  }
});
