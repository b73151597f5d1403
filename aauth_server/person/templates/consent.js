"use strict";
// The person's open page is the built-in relay channel: it polls the events route so
// new requests and the agent's answers appear without a reload.
(function () {
  var POLL_MS = 2000;
  var main = document.querySelector("main[data-events]");
  if (!main) { return; }
  var eventsUrl = main.getAttribute("data-events");
  var current = main.getAttribute("data-request") || "";
  var callback = main.getAttribute("data-callback") || "";
  var shown = {agent: null, ask: null};

  function renderList(items) {
    var list = document.getElementById("open-requests");
    if (!list) { return; }
    var rows = [];
    items.forEach(function (item) {
      if (item.id === current) { return; }
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = item.url;
      a.textContent = item.agent;
      li.appendChild(a);
      li.appendChild(document.createTextNode(" \u2192 " + item.resource));
      rows.push(li);
    });
    if (rows.length === 0) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "Nothing else waiting.";
      rows.push(empty);
    }
    list.replaceChildren.apply(list, rows);
  }

  // The fragments are rendered by the server from the same sanitised templates as the page.
  function swap(id, html, key) {
    var node = document.getElementById(id);
    if (!node || typeof html !== "string" || shown[key] === html) { return; }
    var doc = new DOMParser().parseFromString("<body>" + html + "</body>", "text/html");
    node.replaceChildren.apply(node, Array.prototype.slice.call(doc.body.childNodes));
    shown[key] = html;
  }

  function renderView(view) {
    swap("agent-asserted-body", view.agent_html, "agent");
    var active = document.activeElement;
    var typing = active && active.id === "question" && active.value !== "";
    if (!typing) { swap("ask-area", view.ask_html, "ask"); }
    if (!view.open) {
      var notice = document.getElementById("closed-notice");
      if (notice) { notice.hidden = false; }
      document.querySelectorAll("#decide-form button, #ask-form button").forEach(function (b) {
        b.disabled = true;
      });
    }
  }

  function tick() {
    var url = eventsUrl;
    if (current) {
      url += "?request=" + encodeURIComponent(current);
      if (callback) { url += "&callback=" + encodeURIComponent(callback); }
    }
    fetch(url, {credentials: "same-origin", cache: "no-store", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        renderList(data.requests || []);
        if (data.view) { renderView(data.view); }
        main.setAttribute("data-polled", String(Number(main.getAttribute("data-polled") || "0") + 1));
      })
      .catch(function () { /* the next tick retries */ })
      .then(function () { window.setTimeout(tick, POLL_MS); });
  }
  tick();
})();
