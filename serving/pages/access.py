"""Which pages a person's role may open: the links every page's bar shows (base.html calls
`pages_for`), and the role each page needs (serving/pages/forbidden.py says no with it).

Example::

    >>> from inspection.roles import Role
    >>> [page.path for page in pages_for(Role.REVIEWER)]
    ['/review', '/dashboard']
    >>> [page.path for page in pages_for(Role.ENGINEER)]
    ['/review', '/dashboard', '/loop']
    >>> page_at("/loop/run").needs.value
    'engineer'
"""

from __future__ import annotations

from dataclasses import dataclass

from inspection.roles import Role


@dataclass(frozen=True)
class Page:
    name: str  # data-page in the bar, for tests and styles
    path: str
    label: str  # a msgid of the catalogue
    needs: Role  # the least role that may open it


PAGES = (
    Page("review", "/review", "Review", Role.REVIEWER),
    Page("dashboard", "/dashboard", "Dashboard", Role.REVIEWER),
    Page("loop", "/loop", "Loop", Role.ENGINEER),
)


def pages_for(role: Role) -> list[Page]:
    """The pages `role` may open, in the bar's order."""
    return [page for page in PAGES if role.covers(page.needs)]


def page_at(path: str) -> Page | None:
    """The page `path` belongs to (its forms post under it: /loop/run is the Loop page's)."""
    return next((page for page in PAGES if path == page.path or path.startswith(page.path + "/")), None)
