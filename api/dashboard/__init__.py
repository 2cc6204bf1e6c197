"""The web dashboard: where the space went, served at ``/`` by the API app.

``router`` is included by ``api.app.create_app``. Pages read the savings
report through the same function as the CLI and the JSON API.
"""
from .pages import router

__all__ = ["router"]
