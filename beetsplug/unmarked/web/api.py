"""The extension's HTTP surface, assembled: one blueprint, a module per concern.

    blueprint.py  the blueprint; Host allowlist, read-only and cross-site rules, errors
    page.py       GET /unmarked, the page, and the link from beets' own page
    tracks.py     GET /api/unmarked, the tracks of an operation and query
    marking.py    POST /api/mark, /api/unmark
    preview.py    GET /api/preview
    plan_api.py   GET/POST /api/plan, a whole job's plan summarised
    jobs_api.py   /api/jobs..., the job's events (SSE) and record, /api/<op>-unmarked
    undo_plan.py  GET /api/jobs/ID/undo, what undoing a job would do, summarised

Importing this module registers every route on ``blueprint``.
"""

from __future__ import annotations

from . import jobs_api, marking, page, plan_api, preview, tracks, undo_plan
from .blueprint import blueprint, state

__all__ = ["blueprint", "jobs_api", "marking", "page", "plan_api", "preview", "state", "tracks", "undo_plan"]
