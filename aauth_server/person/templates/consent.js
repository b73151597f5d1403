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

  // Relays keep their node while unchanged, so an answer being typed survives the poll.
  var relayHtml = {};
  function relayNode(html) {
    var doc = new DOMParser().parseFromString("<body>" + html + "</body>", "text/html");
    return doc.body.firstElementChild;
  }

  function renderRelays(items) {
    var box = document.getElementById("relays");
    var list = document.getElementById("relay-list");
    if (!box || !list) { return; }
    var wanted = {};
    items.forEach(function (item) { wanted[item.id] = item; });
    var existing = {};
    Array.prototype.slice.call(list.children).forEach(function (node) {
      var id = node.getAttribute("data-relay-id");
      if (id && wanted[id]) { existing[id] = node; } else { list.removeChild(node); }
    });
    items.forEach(function (item) {
      if (typeof item.html !== "string") { return; }
      var old = existing[item.id];
      if (old && relayHtml[item.id] === item.html) { return; }
      if (old && old.contains(document.activeElement) && document.activeElement.value) { return; }
      var node = relayNode(item.html);
      if (!node) { return; }
      relayHtml[item.id] = item.html;
      if (old) { list.replaceChild(node, old); } else { list.appendChild(node); }
    });
    box.hidden = list.children.length === 0;
  }

  function relayFailed(article, message) {
    var note = article && article.querySelector(".relay-error");
    if (note) { note.textContent = message; note.hidden = false; }
  }

  // The relay forms post in the background: the page (the person's channel) stays open,
  // and "Open" sends the person to the agent's link only once the engage is recorded.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("relay-form")) { return; }
    event.preventDefault();
    var article = form.closest(".relay");
    var buttons = article ? article.querySelectorAll("button") : [];
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    fetch(form.getAttribute("action"), {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: {"Accept": "application/json"},
      body: new URLSearchParams(new FormData(form))
    })
      .then(function (response) {
        return response.json().then(function (data) { return {ok: response.ok, data: data}; });
      })
      .then(function (result) {
        var data = result.data || {};
        if (!result.ok) {
          relayFailed(article, "This could not be sent (" + (data.error || "error") + ").");
          return;
        }
        if (typeof data.target === "string" && /^https?:\/\//i.test(data.target)) {
          window.open(data.target, "_blank", "noopener,noreferrer");
        }
        if (data.state !== "pending" && data.state !== "interacting" && article) {
          article.remove();
          var list = document.getElementById("relay-list");
          var box = document.getElementById("relays");
          if (box && list) { box.hidden = list.children.length === 0; }
        }
      })
      .catch(function () { relayFailed(article, "This could not be sent; try again."); })
      .then(function () {
        Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      });
  });

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
        renderRelays(data.relays || []);
        if (data.view) { renderView(data.view); }
        main.setAttribute("data-polled", String(Number(main.getAttribute("data-polled") || "0") + 1));
      })
      .catch(function () { /* the next tick retries */ })
      .then(function () { window.setTimeout(tick, POLL_MS); });
  }
  tick();
})();
