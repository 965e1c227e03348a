// civicchat console: live updates (server-sent events) and small helpers. No build step.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]');
  csrf = csrf ? csrf.getAttribute("content") : "";

  function refresh(el) {
    if (!el) return;
    var url = el.getAttribute("data-refresh");
    fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) {
        if (r.status === 401) { window.location = "/login?next=" + encodeURIComponent(location.pathname); }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null) return;
        var atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 30;
        el.innerHTML = html;
        if (el.id === "messages" && atBottom) el.scrollTop = el.scrollHeight;
        var now = document.getElementById("state-now"), shown = document.getElementById("conv-state");
        if (now && shown && shown.getAttribute("data-state") !== now.getAttribute("data-state")) {
          shown.setAttribute("data-state", now.getAttribute("data-state"));  // moved by someone else
          shown.textContent = now.getAttribute("data-label");
        }
      })
      .catch(function () {});
  }

  function live() {
    var url = document.body.getAttribute("data-live");
    if (!url || !window.EventSource) return;
    var status = document.getElementById("live-status");
    var current = document.body.getAttribute("data-conversation");
    var source = new EventSource(url);
    source.onopen = function () {
      if (status) { status.className = "live on"; status.textContent = status.getAttribute("data-on"); }
      refresh(document.getElementById("lists"));  // catch up on what happened while away
      refresh(document.getElementById("messages"));
    };
    source.onerror = function () {
      if (status) { status.className = "live"; status.textContent = status.getAttribute("data-off"); }
    };
    ["message_in", "message_out", "status", "conversation"].forEach(function (kind) {
      source.addEventListener(kind, function (e) {
        var data = {};
        try { data = JSON.parse(e.data); } catch (err) { return; }
        refresh(document.getElementById("lists"));
        // Delivery statuses may come without a conversation id: refresh the open one then.
        var mine = String(data.conversation_id) === current;
        if (current && (mine || (kind === "status" && data.conversation_id === null))) {
          refresh(document.getElementById("messages"));
        }
      });
    });
  }

  function replyForm() {
    var form = document.getElementById("reply-form");
    if (!form) return;
    var messages = document.getElementById("messages");
    if (messages) messages.scrollTop = messages.scrollHeight;
    function showExtras() {
      var kind = form.querySelector('input[name="kind"]:checked').value;
      form.querySelectorAll(".extra").forEach(function (div) {
        var kinds = div.getAttribute("data-kind").split(" ");
        div.classList.toggle("shown", kinds.indexOf(kind) >= 0);
      });
    }
    form.querySelectorAll('input[name="kind"]').forEach(function (r) { r.addEventListener("change", showExtras); });
    showExtras();
    document.querySelectorAll("[data-fill]").forEach(function (button) {
      button.addEventListener("click", function () {
        var body = document.getElementById("reply-body");
        form.querySelector('input[name="kind"][value="text"]').checked = true;
        showExtras();
        body.value = button.getAttribute("data-fill");
        body.focus();
      });
    });
    // "/foto" alone in the reply box becomes the canned response with that shortcut.
    var body = document.getElementById("reply-body");
    body.addEventListener("input", function () {
      var m = /^\/([\w-]+)\s$/.exec(body.value);
      if (!m) return;
      var found = document.querySelector('[data-shortcut="' + m[1] + '"]');
      if (found) { body.value = found.getAttribute("data-fill"); }
    });
    form.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
  }

  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        var body = new URLSearchParams(new FormData(select.form));
        fetch(select.form.action, {
          method: "POST", credentials: "same-origin", body: body,
          headers: { "X-CSRF-Token": csrf, "X-Requested-With": "fetch" }
        });
      });
    });
  }

  function problemLinks() {
    var source = document.getElementById("source");
    if (!source) return;
    document.querySelectorAll("[data-line]").forEach(function (a) {
      a.addEventListener("click", function (e) {
        e.preventDefault();
        var line = parseInt(a.getAttribute("data-line"), 10), lines = source.value.split("\n");
        var start = lines.slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
        source.focus();
        source.setSelectionRange(start, start + (lines[line - 1] || "").length);
        source.scrollTop = Math.max(0, (line - 5) * 17);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    live(); replyForm(); autosubmit(); problemLinks();
  });
})();
