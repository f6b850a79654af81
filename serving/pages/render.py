"""Rendering a page: the templates, the page language and the headers every page is sent with.

Example::

    return render(request, "loop.html", user=session.user, csrf=session.csrf, job=job)

Shared by the pages' routers (serving/routers/pages/: review.py, sign-in and review; loop.py,
the loop; dashboard.py, the dashboard, sends a stricter policy still: no script), so every
page has the same Content Security Policy: nothing but this origin, so a page cannot fetch a
font, a script or an image from elsewhere even by mistake.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from serving.pages.access import pages_for
from serving.pages.language import LANGUAGES, choose, translator
from serving.sessions import LANGUAGE_COOKIE

PAGES = Path(__file__).resolve().parent
STATIC = PAGES / "static"
templates = Environment(loader=FileSystemLoader(PAGES / "templates"), autoescape=select_autoescape(["html"]))
templates.globals["pages_for"] = pages_for  # base.html's bar: the pages the signed-in role may open

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; font-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


# Inside <script> the HTML parser ends the element at "</script" and treats "<!--" specially
# (a display name "<!--<script>" left the rest of the page inside the script, issue 25): data
# embedded in a page carries none of < > & as such, only their JSON escapes.
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                              "\u2028": "\\u2028", "\u2029": "\\u2029"})


def script_json(value: object) -> str:
    """`value` as JSON that no string in it can end, comment out or reopen the script element
    holding it; the page reads it back with JSON.parse."""
    return json.dumps(value, ensure_ascii=False).translate(_SCRIPT_SAFE)


def language(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    return choose(cookie=request.cookies.get(LANGUAGE_COOKIE),
                  accept_language=request.headers.get("accept-language"))


def render(request: Request, template: str, *, status: int = 200, **context) -> HTMLResponse:
    lang = language(request)
    html = templates.get_template(template).render(_=translator(lang), lang=lang, languages=LANGUAGES,
                                                   path=request.url.path, **context)
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, lang, max_age=365 * 86400, path="/", samesite="strict")
    return response
