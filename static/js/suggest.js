// Header search autocomplete: an ARIA combobox over /search/suggest. Without JS the form is a
// plain GET search, so everything here is an enhancement.
(function () {
  "use strict";
  var input = document.getElementById("site-search");
  var list = document.getElementById("search-suggestions");
  if (!input || !list || !input.dataset.suggest || !window.fetch) { return; }

  var items = [];
  var active = -1;
  var timer = null;
  var lastQuery = "";
  var controller = null;
  input.setAttribute("role", "combobox");

  function close() {
    list.hidden = true;
    list.textContent = "";
    items = [];
    active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    items.forEach(function (li, i) {
      li.setAttribute("aria-selected", i === index ? "true" : "false");
    });
    active = index;
    if (index >= 0) {
      input.setAttribute("aria-activedescendant", items[index].id);
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function render(suggestions) {
    list.textContent = "";
    items = suggestions.map(function (s, i) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      li.id = "search-suggestion-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", "false");
      a.href = s.url;
      a.textContent = s.title;  // text, never HTML
      a.tabIndex = -1;
      li.appendChild(a);
      li.addEventListener("mousedown", function (e) { e.preventDefault(); });
      li.addEventListener("click", function (e) {
        e.preventDefault();
        window.location.href = s.url;
      });
      list.appendChild(li);
      return li;
    });
    active = -1;
    if (items.length) {
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    } else {
      close();
    }
  }

  function fetchSuggestions() {
    var q = input.value.trim();
    if (q === lastQuery) { return; }
    lastQuery = q;
    if (q.length < 2) { close(); return; }
    if (controller) { controller.abort(); }
    controller = window.AbortController ? new AbortController() : null;
    var url = input.dataset.suggest + "?q=" + encodeURIComponent(q);
    fetch(url, { headers: { Accept: "application/json" }, signal: controller && controller.signal })
      .then(function (r) { return r.ok ? r.json() : { suggestions: [] }; })
      .then(function (data) {
        if (input.value.trim() === q) { render(data.suggestions || []); }
      })
      .catch(function () { /* offline or aborted: the plain search still works */ });
  }

  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(fetchSuggestions, 150);
  });

  input.addEventListener("keydown", function (e) {
    if (e.key === "ArrowDown" && items.length) {
      e.preventDefault();
      highlight((active + 1) % items.length);
    } else if (e.key === "ArrowUp" && items.length) {
      e.preventDefault();
      highlight(active <= 0 ? items.length - 1 : active - 1);
    } else if (e.key === "Enter" && active >= 0) {
      e.preventDefault();
      window.location.href = items[active].firstChild.href;
    } else if (e.key === "Escape" && !list.hidden) {
      e.preventDefault();
      close();
    }
  });

  input.addEventListener("blur", function () { setTimeout(close, 100); });
})();
