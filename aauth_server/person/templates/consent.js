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

  // A poll never replaces what the person is using: while a pointer is pressed, while a
  // form's field holds text the person typed, or once a form was sent, the page keeps its
  // nodes (a replaced form would swallow the click or lose the text).  An unchanged
  // fragment never replaces anything: nodes are compared, not strings, so the first poll
  // leaves the server-rendered page as it is.
  var pressed = 0;
  var leaving = false;
  document.addEventListener("pointerdown", function () { pressed += 1; }, true);
  function release() {
    // After the click that follows pointerup has been dispatched.
    window.setTimeout(function () { pressed = Math.max(0, pressed - 1); }, 0);
  }
  document.addEventListener("pointerup", release, true);
  document.addEventListener("pointercancel", release, true);
  window.addEventListener("blur", function () { pressed = 0; });
  window.addEventListener("pageshow", function (event) { if (event.persisted) { leaving = false; } });

  function edited(node) {
    var fields = node.querySelectorAll("textarea, input[type=text], input:not([type])");
    return Array.prototype.some.call(fields, function (field) {
      return field.value !== field.defaultValue;
    });
  }

  function inUse(node) {
    return leaving || pressed > 0 || node.contains(document.activeElement) || edited(node);
  }

  function parsed(html) {
    return new DOMParser().parseFromString("<body>" + html + "</body>", "text/html").body;
  }

  function sameChildren(node, fresh) {
    var now = node.childNodes;
    var next = fresh.childNodes;
    if (now.length !== next.length) { return false; }
    for (var i = 0; i < now.length; i += 1) {
      if (!now[i].isEqualNode(next[i])) { return false; }
    }
    return true;
  }

  function replaceWith(node, fresh) {
    if (sameChildren(node, fresh) || inUse(node)) { return; }
    node.replaceChildren.apply(node, Array.prototype.slice.call(fresh.childNodes));
  }

  function renderList(items) {
    var list = document.getElementById("open-requests");
    if (!list) { return; }
    var fresh = document.createElement("ul");
    items.forEach(function (item) {
      if (item.id === current) { return; }
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = item.url;
      a.textContent = item.agent;
      li.appendChild(a);
      li.appendChild(document.createTextNode(" \u2192 " + item.resource));
      fresh.appendChild(li);
    });
    if (!fresh.firstChild) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "Nothing else waiting.";
      fresh.appendChild(empty);
    }
    replaceWith(list, fresh);
  }

  // The fragments are rendered by the server from the same sanitised templates as the page.
  function swap(id, html) {
    var node = document.getElementById(id);
    if (!node || typeof html !== "string") { return; }
    replaceWith(node, parsed(html));
  }

  function renderView(view) {
    // Content above the forms moves them: it waits while a button is being pressed.
    if (!pressed && !leaving) { swap("agent-asserted-body", view.agent_html); }
    swap("ask-area", view.ask_html);
    if (!view.open) {
      var notice = document.getElementById("closed-notice");
      if (notice) { notice.hidden = false; }
      document.querySelectorAll("#decide-form button, #ask-form button").forEach(function (b) {
        b.disabled = true;
      });
    }
  }

  // A relay keeps its node while unchanged or in use, so an answer being typed survives.
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
      var node = parsed(item.html).firstElementChild;
      if (!node) { return; }
      var old = existing[item.id];
      if (!old) { list.appendChild(node); return; }
      if (old.isEqualNode(node) || inUse(old)) { return; }
      list.replaceChild(node, old);
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
    if (!form.classList || !form.classList.contains("relay-form")) {
      leaving = !event.defaultPrevented;  // the page is being left: nothing moves under it
      return;
    }
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
