"""Templates and the one helper every admin UI page renders through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from dispatch import __version__

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["version"] = __version__


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """Render a UI template with the values every page shows."""
    runtime = request.app.state.runtime
    base = {"app_name": runtime.settings.app_name, "request_id": request.state.request_id}
    return templates.TemplateResponse(request, name, base | context, status_code=status)
