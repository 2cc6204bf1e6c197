"""The HTTP service: the REST API (/api/v1), hub-compatible routes and the dashboard, in one FastAPI app.

Run it with ``weightvault serve`` or ``uvicorn weightvault.api.app:create_app --factory``.
Everything comes from the environment (``WEIGHTVAULT_*``, see ``store.config``
and ``api.settings``), so any number of processes and nodes sharing one
catalog and bucket serve the same store. Uploads arrive through LFS or Xet
(``xet.py``: huggingface_hub >= 1.20 with ``hf_xet``); downloads are plain HTTP.
"""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from weightvault.store import Vault

from . import errors, hub_account, hub_read, hub_refs, hub_write, lfs, listing, one_segment, rest, xet
from .limits import BodyLimit, Gate
from .mirror import Mirror
from .settings import ServerSettings

try:
    from .dashboard import router as dashboard_router
except ImportError:  # the dashboard is optional: the API works without it
    dashboard_router = None


def create_app(vault: Vault | None = None, settings: ServerSettings | None = None) -> FastAPI:
    """Build the app on ``vault`` (default: ``Vault.open()`` from the environment)."""
    vault = vault or Vault.open()
    settings = settings or ServerSettings.from_env()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        swept = vault.sweep_leftovers()  # bodies, spools and half-written objects of dead processes
        if swept.paths:
            errors.log.info("removed %d temp files of dead processes (%d bytes)", len(swept.paths), swept.bytes)
        yield
        vault.close()

    app = FastAPI(title="weightvault", summary="Lossless, deduplicated storage for model weights",
                  description=__doc__, version="0.1.0", lifespan=lifespan)
    app.state.vault = vault
    app.state.settings = settings
    app.state.gate = Gate(settings.max_busy, settings.busy_wait)
    app.state.mirror = Mirror(vault, settings.upstream, settings.upstream_token) if settings.upstream else None
    errors.install(app)
    app.add_middleware(BodyLimit, settings=settings)  # outermost: a body over the limit never reaches a route
    # Order matters: the fixed /api/v1 and /api/repos routes must win over the hub's /api/{type}/{ns}/{name}
    # patterns, and the dashboard's pages over the catch-all /{ns}/{name}/resolve/... routes.
    app.include_router(rest.router)
    app.include_router(lfs.router)
    app.include_router(xet.router)
    app.include_router(hub_write.router)
    app.include_router(hub_refs.router)
    app.include_router(hub_account.router)
    app.include_router(listing.router)
    if dashboard_router is not None:
        app.include_router(dashboard_router)
    app.include_router(hub_read.router)
    app.include_router(one_segment.router)
    return app
