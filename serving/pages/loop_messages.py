"""The loop's own messages in the page's language: what `qc loop --check`, a turn and
serving/turns.py say, read back from their English and said again from the catalogue.

Example::

    >>> from serving.pages.loop_messages import translate
    >>> translate("counting new labelled images in line", "ko")
    'line 데이터셋의 새 라벨링 이미지 수 세는 중'
    >>> translate("fine-tuning: epoch 3/10, val mAP50 0.412", "ko")
    '미세 조정: 에포크 3/10, 검증 mAP50 0.412'
    >>> translate("anything else", "ko")
    'anything else'

Why read back rather than send message ids: the messages are made in other processes (the
`qc loop` child writes its step and message into the job row; `qc loop --check --json` prints
its list), in English, for the terminal and the JSON API alike, and old job rows hold them
too. So every msgid of `i18n/<lang>/LC_MESSAGES/loop.po` with `{placeholders}` is also a
pattern: a message that matches one whole is said with its translation, each value read back
in turn (a value may be a message of its own: "{counted}; a turn now would be skipped").
A message no pattern matches (an error from elsewhere, naming a file) stays as it was.
tests/test_loop_messages.py makes every message of training/loop_check.py and each turn's
step translate, so a reworded English message without its Korean fails there, not on a page.
"""

from __future__ import annotations

import re
from functools import cache

from babel.messages.pofile import read_po

from serving.pages.language import CATALOGUES, DEFAULT

CATALOGUE = "loop.po"
MAX_DEPTH = 4  # values inside values: "{counted}" holds "{since}"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@cache
def _messages(lang: str) -> dict[str, str]:
    path = CATALOGUES / lang / "LC_MESSAGES" / CATALOGUE
    if lang == DEFAULT or not path.is_file():
        return {}
    with path.open("rb") as handle:
        parsed = read_po(handle, locale=lang)
    return {m.id: m.string for m in parsed
            if m.id and isinstance(m.id, str) and m.string and isinstance(m.string, str) and not m.fuzzy}


def _pattern(template: str) -> re.Pattern[str]:
    """`template` as a regular expression: each {name} any text (the same text where a name
    comes back)."""
    parts, seen, last = [], set(), 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[last:match.start()]))
        name = match.group(1)
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
        seen.add(name)
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts), re.DOTALL)


@cache
def _patterns(lang: str) -> list[tuple[re.Pattern[str], str]]:
    """The catalogue's templates, the most literal text first: "epoch {n}/{of}, val mAP50 {m}"
    is tried before "epoch {n}/{of}", which would match it too."""
    templates = [(template, said) for template, said in _messages(lang).items() if _PLACEHOLDER.search(template)]
    templates.sort(key=lambda pair: -len(_PLACEHOLDER.sub("", pair[0])))
    return [(_pattern(template), said) for template, said in templates]


def translate(text: str | None, lang: str, *, depth: int = 0) -> str:
    """`text` in `lang` where loop.po knows it (whole, or as a pattern); else `text`."""
    if not text or lang == DEFAULT:
        return text or ""
    messages = _messages(lang)
    if text in messages:
        return messages[text]
    if depth >= MAX_DEPTH:
        return text
    for pattern, said in _patterns(lang):
        match = pattern.fullmatch(text)
        if match:
            values = {name: translate(value, lang, depth=depth + 1) for name, value in match.groupdict().items()}
            return said.format(**values)
    return text
