"""MONAI Label's web app, with errors a client can read: unknown models and bad inputs answer 4xx + a message.

Stock MONAI Label 0.8.5 lets its own exceptions escape as a bare "Internal Server Error". This module takes
its FastAPI ``app`` (``monailabel.app:app``) and adds

- a check of the model named in ``POST /infer/{model}``, ``POST /train/{model}`` and
  ``POST /batch/infer/{model}``: an unknown name answers 404 with the names this server has;
- handlers for MONAI Label exceptions: invalid input -> 400, image/label not found -> 404, others -> 500,
  each as JSON ``{"detail": message, "error": kind}``.

The server keeps serving after any of them. Run by ``start_server`` as uvicorn app
``disyre_monai.apps.monailabel.asgi:app``.
"""

from __future__ import annotations

import logging

from disyre_monai.apps.monailabel._compat import require_monailabel

require_monailabel()

from fastapi import Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from monailabel.app import app  # noqa: E402
from monailabel.config import settings  # noqa: E402
from monailabel.interfaces.exception import (  # noqa: E402
    ImageNotFoundException,
    LabelNotFoundException,
    MONAILabelError,
    MONAILabelException,
)
from monailabel.interfaces.utils.app import app_instance  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["app"]

#: request path prefix -> which of the app's info sections lists the valid model names.
MODEL_ROUTES = {("infer",): "models", ("train",): "trainers", ("batch", "infer"): "models"}


def status_of(error: MONAILabelException) -> int:
    """HTTP status for a MONAI Label exception."""
    if isinstance(error, (ImageNotFoundException, LabelNotFoundException)):
        return 404
    if error.error == MONAILabelError.INVALID_INPUT:
        return 400
    return 500


def unknown_model(path: str) -> str | None:
    """The message for a request naming a model this server does not have, or None."""
    prefix = settings.MONAI_LABEL_API_STR.rstrip("/")
    if prefix and path.startswith(prefix):
        path = path[len(prefix):]
    parts = [p for p in path.split("/") if p]
    for route, section in MODEL_ROUTES.items():
        if len(parts) == len(route) + 1 and tuple(parts[: len(route)]) == route:
            known = sorted(app_instance().info().get(section, {}))
            if parts[-1] not in known:
                return f"unknown model {parts[-1]!r} for /{'/'.join(route)}; this server has: {', '.join(known)}."
    return None


@app.middleware("http")
async def reject_unknown_models(request: Request, call_next):
    if request.method == "POST":
        message = unknown_model(request.url.path)
        if message:
            logger.warning(message)
            return JSONResponse(status_code=404, content={"detail": message, "error": "UNKNOWN_MODEL"})
    return await call_next(request)


@app.exception_handler(MONAILabelException)
async def monailabel_error(request: Request, error: MONAILabelException) -> JSONResponse:
    status = status_of(error)
    (logger.error if status >= 500 else logger.warning)(f"{request.method} {request.url.path}: {error.msg}")
    return JSONResponse(status_code=status, content={"detail": error.msg, "error": error.error.value})
