/* Nexus Wiki: progressive enhancement only. Every page works without this file.
   - live preview in the editor (debounced POST to the preview URL, CSRF in form field + header)
   - unsaved-changes guard on the editor (beforeunload while dirty, cleared on submit)
   - <time datetime> shown in the reader's local time zone
   - data-confirm on destructive buttons asks before submitting */
(function () {
  "use strict";

  var PREVIEW_DELAY_MS = 400;

  function setupEditor(form) {
    var body = form.querySelector("textarea[name='body']");
    var target = document.getElementById("live-preview");
    var token = form.querySelector("input[name='csrf_token']");
    var url = form.getAttribute("data-preview-url");
    var pane = target ? target.closest(".preview-pane") : null;
    var timer = null;
    var sequence = 0;

    /* Unsaved-changes guard: a navigation away while dirty asks first. */
    form.dataset.dirty = "false";
    function markDirty() {
      form.dataset.dirty = "true";
    }
    form.addEventListener("input", markDirty);
    form.addEventListener("change", markDirty);
    form.addEventListener("submit", function () {
      form.dataset.dirty = "false";
    });
    window.addEventListener("beforeunload", function (event) {
      if (form.dataset.dirty === "true") {
        event.preventDefault();
        event.returnValue = "";
        return "";
      }
      return undefined;
    });

    if (!body || !target || !url || !window.fetch) {
      return;
    }

    function showError(message) {
      target.textContent = "";
      var p = document.createElement("p");
      p.className = "hint preview-error";
      p.textContent = message;
      target.appendChild(p);
    }

    function refresh() {
      var mine = ++sequence;
      var data = new FormData();
      var csrf = token ? token.value : "";
      data.append("body", body.value);
      data.append("csrf_token", csrf);
      if (pane) {
        pane.setAttribute("aria-busy", "true");
      }
      fetch(url, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrf, "X-Requested-With": "fetch" }
      })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("HTTP " + response.status);
          }
          return response.text();
        })
        .then(function (html) {
          if (mine === sequence) {
            /* The server returns HTML already sanitised by the same allow-list as saved pages. */
            target.innerHTML = html;
          }
        })
        .catch(function () {
          if (mine === sequence) {
            showError("Preview unavailable. Use the Preview button to see your page.");
          }
        })
        .finally(function () {
          if (pane && mine === sequence) {
            pane.removeAttribute("aria-busy");
          }
        });
    }

    body.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, PREVIEW_DELAY_MS);
    });

    if (target.querySelector(".hint") && body.value.trim() !== "") {
      refresh();
    }
  }

  function localTimes(root) {
    if (!window.Intl || !Intl.DateTimeFormat) {
      return;
    }
    var format = new Intl.DateTimeFormat(undefined, {
      year: "numeric",
      month: "short",
      day: "numeric",
      hour: "2-digit",
      minute: "2-digit"
    });
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        el.textContent = format.format(when);
      }
    });
  }

  function confirmations(root) {
    root.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-confirm]");
      if (button && !window.confirm(button.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  }

  function start() {
    var editor = document.querySelector("form#editor");
    if (editor) {
      setupEditor(editor);
    }
    localTimes(document);
    confirmations(document);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
