// Watch pages: confirm before deleting a rule, and the dashboard's live notifications.
// The panel follows /ui/watch/stream (server-sent events over the UI session); each
// announced notification is fetched as the server renders it (escaped there) and put
// on top, and the unread count goes up. EventSource reconnects by itself, sending
// Last-Event-ID, so nothing is missed while it was away.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);

  const panel = document.querySelector("[data-watch-live]");
  if (!panel || !window.EventSource) return;
  const list = panel.querySelector("[data-feed]");
  const unread = panel.querySelector("[data-unread]");

  async function show(id) {
    if (list.querySelector('[data-notification="' + id + '"]')) return;
    const response = await fetch("/ui/watch/notifications/" + id, { credentials: "same-origin" });
    if (!response.ok || list.querySelector('[data-notification="' + id + '"]')) return;
    list.insertAdjacentHTML("afterbegin", await response.text());
    list.firstElementChild.classList.add("watch-fresh");
    unread.textContent = String(Number(unread.textContent) + 1);
    const empty = panel.querySelector("[data-empty]");
    if (empty) empty.remove();
  }

  const source = new EventSource(panel.dataset.watchLive);
  source.addEventListener("open", function () { panel.dataset.state = "live"; });
  source.addEventListener("error", function () { panel.dataset.state = "reconnecting"; });
  source.addEventListener("notification", function (message) {
    show(JSON.parse(message.data).notification_id);
  });
})();
