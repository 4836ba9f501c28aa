// nocd live dashboard: the server pushes re-rendered panels over Server-Sent Events.
// No framework and no build step; EventSource reconnects by itself.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var pending = {};

  function apply(name, html) {
    var el = document.getElementById("panel-" + name);
    if (!el) return;
    // Do not replace a panel while someone types in it (a note); apply it after blur.
    if (el.contains(document.activeElement) && document.activeElement.tagName === "INPUT") {
      pending[name] = html;
      return;
    }
    delete pending[name];
    el.innerHTML = html;
  }

  document.addEventListener("focusout", function () {
    setTimeout(function () {
      Object.keys(pending).forEach(function (name) { apply(name, pending[name]); });
    }, 0);
  });

  if (!window.EventSource) return;
  var source = new EventSource("/ui/events");
  source.addEventListener("panels", function (ev) {
    var panels = JSON.parse(ev.data);
    Object.keys(panels).forEach(function (name) { apply(name, panels[name]); });
    document.body.setAttribute("data-updated", String(Date.now()));
  });
  source.addEventListener("open", function () { live.setAttribute("data-state", "live"); });
  source.addEventListener("error", function () { live.setAttribute("data-state", "reconnecting"); });
})();
