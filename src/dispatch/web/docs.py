"""``/docs``: Swagger UI served from local assets (no CDN), reading ``/openapi.json``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

STATIC_PREFIX = "/static"


def install(app: FastAPI) -> None:
    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{STATIC_PREFIX}/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PREFIX}/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PREFIX}/vendor/swagger-ui/favicon-32x32.png",
        )
