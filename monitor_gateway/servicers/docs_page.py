"""The API's page at `/docs`: Swagger UI, from the swagger-ui-py package's own copy (served by
the gateway itself, so the page needs nothing from the internet), reading `/openapi.json`.
Paths are relative, so the page works behind a proxy that serves the gateway under a prefix."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["DOCS_HTML", "DOCS_INIT_JS", "swagger_ui_directory"]

DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>PanDA mesh API</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""

# A file rather than an inline script: the page's Content-Security-Policy allows only its own.
DOCS_INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
  });
};
"""

DOCS_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def swagger_ui_directory() -> Path:
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"
