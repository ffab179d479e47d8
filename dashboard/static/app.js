// pollhook dashboard: refreshes the parts of the page marked data-live
// every few seconds, and marks a form busy while it is sent. The pages work
// without it.
(function () {
  "use strict";
  var interval = 3000;

  function refresh() {
    if (document.visibilityState !== "visible" || !document.querySelector("[data-live]")) {
      return;
    }
    fetch(location.href, { credentials: "same-origin", headers: { "X-Pollhook-Live": "1" } })
      .then(function (res) {
        if (res.redirected || res.status === 401 || res.status === 403) {
          location.reload(); // signed out: show the sign-in page
          return null;
        }
        return res.ok ? res.text() : null;
      })
      .then(function (html) {
        if (!html) {
          return;
        }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var next = fresh.getElementById(el.id);
          // Leave alone a part the user is working in (keyboard focus).
          if (next && next.innerHTML !== el.innerHTML && !el.contains(document.activeElement)) {
            el.innerHTML = next.innerHTML;
          }
        });
        var clock = document.querySelector("[data-live-clock]");
        if (clock) {
          clock.textContent = "; updated " + new Date().toISOString().slice(11, 19) + " UTC";
        }
      })
      .catch(function () { /* the next tick tries again */ });
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

  setInterval(refresh, interval);
})();
