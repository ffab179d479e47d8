// pollhook dashboard: refreshes the parts of the page marked data-live
// every few seconds, and marks a form busy while it is sent. The pages work
// without it.
(function () {
  "use strict";
  var interval = 3000, maxInterval = 30000, wait = interval;

  // The relative times ("(4 s ago)") change on every refresh: a part is
  // replaced only when something else changed; otherwise they are updated
  // in place, so nothing the user scrolled or selected moves.
  function withoutTimes(html) {
    return html.replace(/<span class="ago">[^<]*<\/span>/g, "");
  }

  function update(el, next) {
    if (withoutTimes(next.innerHTML) !== withoutTimes(el.innerHTML)) {
      if (!el.contains(document.activeElement)) { // leave a part the user is working in
        el.innerHTML = next.innerHTML;
      }
      return;
    }
    var olds = el.querySelectorAll(".ago"), news = next.querySelectorAll(".ago");
    for (var i = 0; i < olds.length && i < news.length; i++) {
      if (olds[i].textContent !== news[i].textContent) {
        olds[i].textContent = news[i].textContent;
      }
    }
  }

  function refresh() {
    if (document.visibilityState !== "visible") {
      return Promise.resolve(true);
    }
    var abort = new AbortController();
    var timer = setTimeout(function () { abort.abort(); }, 10000);
    return fetch(location.href, { credentials: "same-origin", headers: { "X-Pollhook-Live": "1" }, signal: abort.signal })
      .then(function (res) {
        if (res.redirected || res.status === 401 || res.status === 403) {
          location.reload(); // signed out: show the sign-in page
          return null;
        }
        return res.ok ? res.text() : null;
      })
      .then(function (html) {
        if (!html) {
          return false;
        }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var next = fresh.getElementById(el.id);
          if (next) {
            update(el, next);
          }
        });
        var clock = document.querySelector("[data-live-clock]");
        if (clock) {
          clock.textContent = "; updated " + new Date().toISOString().slice(11, 19) + " UTC";
        }
        return true;
      })
      .catch(function () { return false; })
      .finally(function () { clearTimeout(timer); });
  }

  // One refresh at a time; after a failure, wait longer (up to 30 s). A
  // page slow to make (a busy instance) is refreshed less often: at most a
  // tenth of the time goes to making it.
  function loop() {
    setTimeout(function () {
      var began = Date.now();
      refresh().then(function (ok) {
        var took = Date.now() - began;
        wait = ok ? Math.min(Math.max(interval, 10 * took), maxInterval) : Math.min(wait * 2, maxInterval);
        loop();
      });
    }, wait);
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var button = form.querySelector("button[type=submit]");
    if (form.dataset.busy && button) {
      // After this event, so that the button's value is still sent.
      setTimeout(function () {
        button.disabled = true;
        button.textContent = form.dataset.busy;
      }, 0);
    }
  });

  if (document.querySelector("[data-live]")) {
    loop();
  }
})();
