"""Web pages for people on the admin listener (/ui/): server-rendered with jinja2, a few lines
of JavaScript for the theme toggle. See docs/admin-api.md, "Web pages"."""

from __future__ import annotations

from aiohttp import web

PREFIX = "/ui"


def mount(app: web.Application) -> None:
    """Add the pages to the admin application (they read its AdminServices)."""
    from admin_api.web.views import create_web_app

    app.add_subapp(PREFIX, create_web_app())
