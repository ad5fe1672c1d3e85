"""`splatforge serve`: a job service that takes captures over HTTP and gives back splats.

    settings.py  every knob of the service (`ServiceSettings`), read from CLI flags or the environment
    store.py     job records through SQLAlchemy (SQLite in the workspace by default, PostgreSQL by URL)
    executor.py  jobs as Ray tasks; the task reports progress to the store itself
    uploads.py   checks an upload by content and bounds before anything is queued
    app.py       the FastAPI application (`create_app(settings)`): /v1 API, the web UI, the viewer
    cli.py       `splatforge serve`
"""

from __future__ import annotations
