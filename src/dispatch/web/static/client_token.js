// A gateway client's API token, kept for this browser tab only, so /documentation can
// "Try it out" without asking for it again. The server never sends the token back: the
// client login form stores what was typed as it is submitted, and the login page (which
// a failed login re-renders) and every logout forget it. sessionStorage, never
// localStorage or a cookie: it is gone when the tab closes.
(function () {
  "use strict";
  var KEY = "dispatch.gatewayToken";

  function forget() {
    try { window.sessionStorage.removeItem(KEY); } catch (e) { /* storage disabled */ }
  }

  window.DispatchClientToken = {
    get: function () {
      try { return window.sessionStorage.getItem(KEY); } catch (e) { return null; }
    }
  };

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.hasAttribute("data-token-store")) {
      var input = form.elements.namedItem("token");
      var token = input && input.value.trim();
      if (token) {
        try { window.sessionStorage.setItem(KEY, token); } catch (e) { /* storage disabled */ }
      }
    } else if (form.hasAttribute("data-token-clear")) {
      forget();
    }
  });

  if (document.body.hasAttribute("data-token-reset")) {
    forget();
  }
})();
