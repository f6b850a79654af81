"""Who may do what: the one `Role` that keys, people, the service's guards and its schemas use.

Example::

    >>> from inspection.roles import Role
    >>> Role.ADMIN.covers(Role.REVIEWER), Role.REVIEWER.covers(Role.ENGINEER)
    (True, False)
    >>> Role.ENGINEER.covers(Role.STATION)
    False
    >>> [role.value for role in Role.staff()]
    ['reviewer', 'engineer', 'admin']

Stations are machines: a station role inspects as its own stations and reads their records.
People are staff, ordered: a reviewer reads and reviews; an engineer also manages stations,
rules and models; an admin also manages keys and accounts. Each staff role can do what the
staff roles before it can, but no staff role is a station (a guard names both when both may
call it, as the inspect route does).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    STATION = "station"
    REVIEWER = "reviewer"
    ENGINEER = "engineer"
    ADMIN = "admin"

    @classmethod
    def staff(cls) -> tuple[Role, ...]:
        """The people's roles, least to most."""
        return (cls.REVIEWER, cls.ENGINEER, cls.ADMIN)

    @property
    def is_staff(self) -> bool:
        return self is not Role.STATION

    def covers(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may."""
        if not (self.is_staff and needed.is_staff):
            return self is needed
        staff = Role.staff()
        return staff.index(self) >= staff.index(needed)

    @classmethod
    def parse(cls, value: str) -> Role:
        """A role from its name; a clear error naming the choices otherwise."""
        from inspection.errors import ConfigError

        try:
            return cls(value.strip().lower())
        except ValueError:
            raise ConfigError(f"role {value!r}: use one of {', '.join(r.value for r in cls)}") from None
