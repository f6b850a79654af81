"""Texts the server makes for people (alarm messages), kept as an English template and its
values so that each reader gets them in their own language and the plant's time.

Example::

    >>> from datetime import datetime
    >>> from inspection.analytics.phrases import Phrase, When, Word
    >>> from inspection.analytics.plant_time import PlantClock
    >>> text = Phrase("{statistic} down {percent}% since {since}: {cause}",
    ...               statistic=Word("sharpness"), percent="40", since=When(datetime(2026, 3, 2, 5, 20)),
    ...               cause=Word("lens or focus"))
    >>> text.render(clock=PlantClock("Asia/Seoul"))
    'sharpness down 40% since 2026-03-02 14:20: lens or focus'
    >>> korean = {"{statistic} down {percent}% since {since}: {cause}":
    ...               "{since}부터 {statistic} {percent}% 감소: {cause}",
    ...           "sharpness": "선명도", "lens or focus": "렌즈 또는 초점"}
    >>> text.render(lambda s: korean.get(s, s), PlantClock("Asia/Seoul"))
    '2026-03-02 14:20부터 선명도 40% 감소: 렌즈 또는 초점'
    >>> Phrase.from_json(text.to_json()) == text
    True

How: the template is the message id of a catalogue (serving/pages/i18n/<lang>/LC_MESSAGES/
alarms.po); each value is plain text (numbers formatted once, alike in every language), a
`Word` (translated), a `When` (an instant, shown in plant time) or a nested `Phrase`. The
English rendering is stored beside the JSON form (the webhook, MQTT and the JSON API carry it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Union

from inspection.analytics.plant_time import PlantClock


def _same(text: str) -> str:
    return text


@dataclass(frozen=True)
class Word:
    """A word or words that a catalogue translates (a cause, a statistic's name)."""

    text: str


@dataclass(frozen=True)
class When:
    """An instant (naive UTC or aware), shown in the plant's time zone."""

    at: datetime


Value = Union[str, Word, When, "Phrase"]


class Phrase:
    """An English template with {name} placeholders and their values."""

    __slots__ = ("template", "values")

    def __init__(self, template: str, **values: Value) -> None:
        self.template = template
        self.values = values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Phrase) and (self.template, self.values) == (other.template, other.values)

    def __hash__(self) -> int:
        return hash(self.template)

    def __repr__(self) -> str:
        return f"Phrase({self.template!r}, **{self.values!r})"

    def render(self, translate: Callable[[str], str] = _same, clock: PlantClock | None = None, *,
               lang: str = "en") -> str:
        """The text in `translate`'s language, times in `clock`'s zone (UTC without one)."""
        clock = clock or PlantClock("UTC")

        def show(value: Value) -> str:
            if isinstance(value, Phrase):
                return value.render(translate, clock, lang=lang)
            if isinstance(value, Word):
                return translate(value.text)
            if isinstance(value, When):
                return clock.format(value.at, lang=lang)
            return str(value)

        shown = {name: show(value) for name, value in self.values.items()}
        try:
            return translate(self.template).format(**shown)
        except (KeyError, IndexError, ValueError):  # a broken translation must not hide the alarm
            return self.template.format(**shown)

    def templates(self) -> set[str]:
        """This template and every nested one and word: what a catalogue must translate."""
        found = {self.template}
        for value in self.values.values():
            if isinstance(value, Phrase):
                found |= value.templates()
            elif isinstance(value, Word):
                found.add(value.text)
        return found

    def to_json(self) -> dict[str, Any]:
        def encode(value: Value) -> Any:
            if isinstance(value, Phrase):
                return {"phrase": value.to_json()}
            if isinstance(value, Word):
                return {"word": value.text}
            if isinstance(value, When):
                return {"time": value.at.isoformat()}
            return str(value)

        return {"template": self.template, "values": {k: encode(v) for k, v in self.values.items()}}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Phrase:
        def decode(value: Any) -> Value:
            if isinstance(value, dict):
                if "phrase" in value:
                    return cls.from_json(value["phrase"])
                if "word" in value:
                    return Word(str(value["word"]))
                if "time" in value:
                    return When(datetime.fromisoformat(value["time"]))
            return str(value)

        return cls(str(data["template"]), **{k: decode(v) for k, v in dict(data.get("values", {})).items()})

    @classmethod
    def loads(cls, text: str | None) -> Phrase | None:
        """The stored JSON form; None for none (an alarm stored before phrases were)."""
        if not text:
            return None
        try:
            return cls.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError):
            return None
