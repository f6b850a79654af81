"""403 as a page: what a person's role may not open, said in words, with the way on.

Example::

    if not session.user.role.covers(Role.ENGINEER):
        return forbidden_page(request, session, "The Loop page is for engineers and admins.")

Why a page and not the API's JSON: a person who follows a link or a bookmark to a page their
role may not open should read a sentence in their language, who they are signed in as, links to
the pages they may open (serving/pages/access.py) and a way to sign in as someone else, not
`{"detail": ...}`. The status stays 403, so scripts see the refusal as before.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from inspection.roles import Role
from inspection.store.users import Session
from serving.pages.access import page_at
from serving.pages.render import render


def forbidden_page(request: Request, session: Session, reason: str, *, needs: Role | None = None) -> HTMLResponse:
    """The 403 page: `reason` (a msgid of the catalogue) and the role needed (`needs`, else
    the one of the page the path belongs to)."""
    page = page_at(request.url.path)
    needed = needs or (page.needs if page else None)
    return render(request, "forbidden.html", status=403, user=session.user, csrf=session.csrf, reason=reason,
                  needs=needed.value if needed else None)
