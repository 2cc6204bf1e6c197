"""The web dashboard: where the space went, served by the API app (``create_app`` includes ``router``).

Pages (HTML, inline SVG charts, one local stylesheet, no scripts):

- ``/`` — raw against stored overall and ingest by ingest, savings by mechanism,
  the largest families, and the repos (``?q=``, ``?sort=``, ``?page=``, ``?per_page=``);
- ``/ui/families`` and ``/ui/families/{family}`` — a family's base and members as a tree;
- ``/ui/repos/{org}/{name}?rev=`` — revisions, files (raw, coded, which repo paid for them),
  download links and the ``huggingface_hub`` snippet to pull it from this server;
- ``/ui/files/{org}/{name}?path=&rev=`` — per-tensor detail: codec, mechanism, base, why;
- ``/ui/download/{org}/{name}/{rev}/{path}`` — a file for a browser (cookie auth);
- ``/ui/login``, ``/ui/logout`` — the read-token cookie, needed when anonymous reads are off.

Every savings figure is ``dedup.report.build_report``'s, as in ``weightvault report`` and
``/api/v1/report``; each figure is also in a ``data-*`` attribute as an exact integer.
"""
from .pages import router

__all__ = ["router"]
