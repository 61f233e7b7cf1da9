// Swagger UI on /openapi-user.json. A client's token, kept by this tab at login
// (see client_token.js), is handed to "Try it out" once the document has loaded.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  var ui = window.SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    // Never copy the token to localStorage, which Swagger UI does when this is on.
    persistAuthorization: false,
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
    onComplete: function () {
      var token = window.DispatchClientToken && window.DispatchClientToken.get();
      if (token) {
        ui.preauthorizeApiKey(root.getAttribute("data-scheme"), token);
        root.setAttribute("data-authorized", "true");
      }
    }
  });
  window.swaggerUi = ui;
})();
