"""Page text in English and Korean, from Babel message catalogues in `i18n/<lang>/LC_MESSAGES/`.

Example::

    >>> from serving.pages.language import choose, translator
    >>> choose(cookie=None, accept_language="ko-KR,ko;q=0.9,en;q=0.8")
    'ko'
    >>> translator("ko")("Sign in")
    '로그인'

English is the source text (the msgids); a language's `.po` file is read with Babel when the
service starts (no compiled `.mo` to keep in step). The language is the `qc_lang` cookie (set by
the switch on every page), else the browser's Accept-Language, else English. The page's script
gets the same catalogue as JSON (`catalogue(lang)`), so its text follows too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LANGUAGES = {"en": "English", "ko": "한국어"}
DEFAULT = "en"
CATALOGUES = Path(__file__).with_name("i18n")


@cache
def catalogue(lang: str) -> dict[str, str]:
    """msgid -> translation for `lang` (empty for English and for untranslated entries)."""
    if lang == DEFAULT:
        return {}
    found: dict[str, str] = {}
    # messages.po (the review pages) and any other catalogue beside it (analytics.po, the dashboard).
    for path in sorted((CATALOGUES / lang / "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as handle:
            parsed = read_po(handle, locale=lang)
        # A plural entry's id and string are tuples; the pages use none.
        found.update({m.id: m.string for m in parsed
                      if m.id and isinstance(m.id, str) and m.string and isinstance(m.string, str) and not m.fuzzy})
    return found


def translator(lang: str) -> Callable[[str], str]:
    messages = catalogue(lang)
    return lambda text: messages.get(text, text)


def choose(*, cookie: str | None, accept_language: str | None) -> str:
    """The page language: the switch's cookie, else the browser's preference, else English."""
    if cookie in LANGUAGES:
        return cookie
    preferences = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        preferences.append((-quality, position, tag.strip().lower().split("-")[0]))
    for _, _, tag in sorted(preferences):
        if tag in LANGUAGES:
            return tag
    return DEFAULT

# Shown through a variable (t(review.decision), _(user.role.value)), so no extractor sees them;
# the catalogue must still translate them.
DYNAMIC_MESSAGES = ("reviewer", "engineer", "admin", "defect", "false_alarm", "retracted", "ng_confirmed",
                    "ok_released", "confirmed", "wrong_class", "missed", "undecided",
                    # alarm kinds (AlarmKind) and the default shift names (QC_SHIFTS), on the dashboard
                    "spc", "equipment", "model", "mix", "early", "late", "night")
