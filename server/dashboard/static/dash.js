// iacrun dashboard: confirmations before forms that destroy or stop (server/dashboard/questions.py),
// and the live updates of the runs and schedules lists (a table with `data-poll`: polls that URL and swaps its
// rows; the server renders them with the page's own template).
"use strict";

document.addEventListener("submit", function (event) {
  var form = event.target;
  var message = form.getAttribute && form.getAttribute("data-confirm");
  if (!message) return;
  if (!window.confirm(message)) {
    event.preventDefault();
    return;
  }
  // answered here: the server does not ask again (without this script, it asks with a page)
  var field = form.querySelector("input[name='confirmed']");
  if (!field) {
    field = document.createElement("input");
    field.type = "hidden";
    field.name = "confirmed";
    form.appendChild(field);
  }
  field.value = "yes";
});

(function () {
  var table = document.querySelector("table[data-poll]");
  if (!table) return;
  var body = table.tBodies[0];
  var state = document.getElementById("live-state");
  var url = table.getAttribute("data-poll");
  var last = null;
  var failures = 0;

  function poll() {
    if (document.hidden) return schedule();
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload(); // the session ended: the page redirects to sign-in
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (!data) return;
        failures = 0;
        state.textContent = "Live: updated " + new Date().toLocaleTimeString() + ".";
        if (data.html === last) return;
        if (last !== null) {
          var focused = document.activeElement;
          var label = focused && body.contains(focused) ? focused.getAttribute("aria-label") : null;
          body.innerHTML = data.html;
          if (label) {
            var again = body.querySelector('[aria-label="' + CSS.escape(label) + '"]');
            if (again) again.focus();
          }
        }
        last = data.html;
      })
      .catch(function () {
        failures += 1;
        state.textContent = "Live updates paused: the server does not answer (retrying).";
      })
      .then(schedule);
  }

  function schedule() {
    window.setTimeout(poll, failures ? Math.min(30000, 2000 * failures) : 2000);
  }

  schedule();
})();
