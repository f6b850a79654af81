"""The pages people use in a browser, in one place: the service's HTML routes.

    review.py      /login, /logout, /review (the review page's shell), /review/image/{id}
    loop.py        /loop: an engineer starts a turn of the labeling loop and follows it
    dashboard.py   /dashboard: rates, Pareto, control charts and alarms

Each signs its person in through the session cookie (serving/sessions.py) and renders with the
templates, static files and language catalogue of serving/pages/. The JSON APIs they mirror
are the other routers (reviews, loop, analytics).
"""

from __future__ import annotations

from fastapi import APIRouter

from serving.routers.pages import dashboard, loop, review

router = APIRouter()
for _module in (review, loop, dashboard):
    router.include_router(_module.router)
