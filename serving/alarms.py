"""The alarm evaluator: SPC alarms on the defect rate, equipment and model alarms from drift,
stored once, sent to a webhook and MQTT, counted in Prometheus gauges.

Example::

    evaluator = AlarmEvaluator(AnalyticsStore(db), settings, metrics=metrics)
    raised = evaluator.evaluate()          # in a thread: the lifespan runs it every QC_ALARM_INTERVAL_S

One evaluation, and why it is cheap enough to run every half minute:

1. `refresh` folds the newest inspections into the 15-minute rollups (a few buckets).
2. For every station and class with frozen limits (an engineer froze a baseline), the last
   QC_SPC_WINDOW complete subgroups after the baseline are charted: EWMA and CUSUM (and the
   Western Electric rules when QC_SPC_RULES names them) on the p-chart, and the zone and trend
   rules QC_SPC_RULES names on the station's u-chart (defects per part; alarms u:WE1 ...).
   Subgroups are numbered from the end of the baseline, so every evaluation sees the same
   subgroups. A condition holds while the chart's newest subgroup is in alarm (EWMA, CUSUM)
   or a zone rule fired in its last HOLD_SUBGROUPS subgroups; only rises count (a lower
   defect rate is no alarm).
3. For every station with a frozen baseline, its last QC_DRIFT_WINDOW frames are compared with
   the baseline's frames (inspection/analytics/drift.py): a finding named in
   QC_DRIFT_CONFIRMATIONS consecutive evaluations is an equipment alarm (or a model alarm when
   only the confidences moved). bench/analytics shows why one check is not enough: a window
   checked again and again would otherwise repeat a rare false finding. An image statistic
   that moved in all frames but not in the passing ones moved with the defect rate (more
   defective parts, which look different): that is a mix alarm, which names no equipment.
4. A condition already stored is not stored again (the alarms table's unique active key,
   which also holds across service processes); a condition that ended is cleared, so a later
   one is a new alarm. Each new alarm goes to the webhook and MQTT; a failed delivery is
   logged and never stops the evaluation (the alarm is stored and shown either way).
5. Each alarm joins its station's open incident (inspection/store/incidents.py): the alarms
   that fire together at a station are one problem, acknowledged once.

Texts: each alarm's message is a `Phrase` (inspection/analytics/phrases.py), stored with its
English rendering in plant time (QC_TIMEZONE); pages render it in the reader's language.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlparse

import numpy as np

from inspection.analytics.drift import Cause, DriftSettings, Finding, Source, compare_windows
from inspection.analytics.phrases import Phrase, When, Word
from inspection.analytics.plant_time import PlantClock
from inspection.analytics.spc import (
    ChartKind,
    CusumSettings,
    EwmaSettings,
    Rule,
    Side,
    cusum,
    ewma,
    rule_hits,
)
from inspection.store.analytics import (
    ALL_CLASSES,
    AlarmKind,
    AlarmRecord,
    AnalyticsStore,
    FrozenLimits,
    Grouping,
    alarm_key,
)
from inspection.store.records import utcnow
from serving.metrics import Metrics
from serving.settings import ServeSettings

log = logging.getLogger("qc.alarms")

HOLD_SUBGROUPS = 5  # a zone rule's alarm holds while it fired in this many newest subgroups
ZONE_RULES = (Rule.BEYOND_3_SIGMA, Rule.TWO_OF_THREE_BEYOND_2_SIGMA, Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA,
              Rule.EIGHT_ON_ONE_SIDE, Rule.TREND)


def u_rule(rule: Rule) -> str:
    """An alarm's rule name for the u-chart: u:WE1 apart from the p-chart's WE1."""
    return f"u:{rule.value}"


def chart_rules(text: str) -> list[Rule]:
    try:
        return [Rule(part.strip().upper()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"QC_SPC_RULES {text!r}: use any of {', '.join(r.value for r in Rule)}") from None


def subject(station: str, class_name: str = ALL_CLASSES) -> Phrase:
    """What an alarm is about: the station, or one class at it."""
    if class_name:
        return Phrase("station {station}, class {class_name}", station=station, class_name=class_name)
    return Phrase("station {station}", station=station)


def moved(change: float) -> Phrase:
    """A relative change in words: up 12%, down 40%."""
    template = "up {percent}%" if change > 0 else "down {percent}%"
    return Phrase(template, percent=f"{abs(change) * 100:.0f}")


def finding_phrase(finding: Finding, *, light_moved: bool) -> Phrase:
    """A drift finding in words, its time in plant time (drift.py's own message keeps UTC)."""
    statistic = Word(finding.statistic)
    if finding.cause is Cause.COLOUR:
        change = Phrase("{statistic} {direction} against the light", statistic=statistic,
                        direction=moved(finding.change))
    elif finding.cause in (Cause.FOCUS, Cause.CONTRAST) and light_moved:
        change = Phrase("{statistic} {direction} beyond what the light explains", statistic=statistic,
                        direction=moved(finding.change))
    else:
        change = Phrase("{statistic} {direction}", statistic=statistic, direction=moved(finding.change))
    if finding.since is not None:
        return Phrase("{change} since {since}: {cause}", change=change, since=When(finding.since),
                      cause=Word(finding.cause.value))
    return Phrase("{change}: {cause}", change=change, cause=Word(finding.cause.value))


@dataclass(frozen=True)
class Condition:
    kind: AlarmKind
    station: str
    class_name: str
    rule: str
    phrase: Phrase
    side: str | None = None
    since: datetime | None = None

    @property
    def key(self) -> str:
        return alarm_key(self.station, self.class_name, self.rule)


class AlarmEvaluator:
    def __init__(self, store: AnalyticsStore, settings: ServeSettings, *, metrics: Metrics | None = None,
                 notifiers: list | None = None) -> None:
        self.store, self.settings, self.metrics = store, settings, metrics
        self.rules = chart_rules(settings.spc_rules)
        self.notifiers = notifiers if notifiers is not None else notifiers_of(settings)
        self.clock = PlantClock(settings.timezone)
        self._drift_seen: dict[str, int] = {}  # key -> consecutive evaluations naming it

    def evaluate(self) -> list[AlarmRecord]:
        """One evaluation (blocking: run it in a thread). Returns the alarms raised now."""
        self.store.refresh()
        holding: list[Condition] = []
        evaluated_keys: set[str] = set()
        frozen = self.store.limits()
        for limits in frozen:
            chart = self._spc if limits.limits.kind is ChartKind.P else self._u_chart
            conditions, keys = chart(limits)
            holding += conditions
            evaluated_keys |= keys
        for station in sorted({f.station_id for f in frozen if f.class_name == ALL_CLASSES}):
            reference = next(f for f in frozen if f.station_id == station and f.class_name == ALL_CLASSES)
            conditions, keys = self._drift(reference)
            holding += conditions
            evaluated_keys |= keys
        raised = []
        for condition in holding:
            alarm = self.store.raise_alarm(condition.kind, condition.station, condition.class_name, condition.rule,
                                           condition.phrase.render(clock=self.clock), side=condition.side,
                                           since=condition.since, phrase=condition.phrase)
            if alarm is not None:
                raised.append(alarm)
        held = {c.key for c in holding}
        ended = [key for key in self.store.active() if key in evaluated_keys and key not in held]
        self.store.clear(ended)
        for alarm in raised:
            log.warning("alarm", extra={"station": alarm.station_id, "rule": alarm.rule, "alarm": alarm.message})
            if self.metrics:
                self.metrics.alarms_raised.labels(kind=alarm.kind.value).inc()
            self.notify(alarm)
        self._gauges()
        return raised

    # -- SPC ---------------------------------------------------------------------------------

    def _spc(self, frozen: FrozenLimits) -> tuple[list[Condition], set[str]]:
        s = self.settings
        groups = self.store.subgroups(frozen.station_id, size=frozen.subgroup_size, after=frozen.baseline_to,
                                      last=s.spc_window, class_name=frozen.class_name)
        keys = {alarm_key(frozen.station_id, frozen.class_name, rule.value) for rule in self.rules}
        if len(groups) == 0:
            return [], keys
        limits, counts = frozen.limits, groups.failed
        sizes = np.full(len(groups), groups.size)
        last = len(groups) - 1
        what = subject(frozen.station_id, frozen.class_name)
        found: list[Condition] = []

        def condition(rule: Rule, detail: Phrase, index: int) -> Condition:
            text = Phrase("{what}: defect rate up (subgroup {subgroup} after the baseline, at {at}: {failed}/{size} "
                          "failed; baseline {baseline}): {detail}", what=what,
                          subgroup=str(groups.first_index + index + 1), at=When(groups.times[index]),
                          failed=str(counts[index]), size=str(groups.size), baseline=f"{limits.centre:.2%}",
                          detail=detail)
            return Condition(AlarmKind.SPC, frozen.station_id, frozen.class_name, rule.value, text,
                             side=Side.ABOVE.value, since=groups.times[index])

        if Rule.EWMA in self.rules:
            chart = ewma(limits, counts, sizes, EwmaSettings(s.ewma_lambda, s.ewma_width))
            if chart.above[-1]:
                found.append(condition(Rule.EWMA, Phrase("EWMA {value} above its limit {limit}",
                                                         value=f"{chart.statistic[-1]:.2%}",
                                                         limit=f"{chart.upper[-1]:.2%}"), last))
        if Rule.CUSUM in self.rules:
            sums = cusum(limits, counts, sizes, CusumSettings(s.cusum_shift, s.cusum_h))
            if sums.above[-1]:
                found.append(condition(Rule.CUSUM, Phrase(
                    "CUSUM {value} defective parts more than the baseline allows (h {h})",
                    value=f"{sums.upper_sum[-1]:.1f}", h=f"{s.cusum_h:g}"), last))
        zone = [r for r in self.rules if r in ZONE_RULES]
        if zone:
            z = limits.standardise(counts, sizes)
            for (rule, side), hits in rule_hits(z, zone).items():
                recent = np.flatnonzero(hits[-HOLD_SUBGROUPS:])
                if side is Side.ABOVE and len(recent):
                    index = len(groups) - min(HOLD_SUBGROUPS, len(groups)) + int(recent[-1])
                    found.append(condition(rule, Phrase("Western Electric {rule} (z {z}σ)", rule=rule.value,
                                                        z=f"{z[index]:+.1f}"), index))
        return found, keys

    def _u_chart(self, frozen: FrozenLimits) -> tuple[list[Condition], set[str]]:
        """The u-chart (defects per part) against its frozen limits: the zone and trend rules
        of QC_SPC_RULES, stored as u:WE1 ... u:TREND beside the p-chart's alarms. EWMA and
        CUSUM stay on the p-chart: their settings are tuned for a fraction defective."""
        zone = [r for r in self.rules if r in ZONE_RULES]
        keys = {alarm_key(frozen.station_id, frozen.class_name, u_rule(rule)) for rule in zone}
        if not zone:
            return [], keys
        groups = self.store.subgroups(frozen.station_id, size=frozen.subgroup_size, after=frozen.baseline_to,
                                      last=self.settings.spc_window, class_name=frozen.class_name)
        if len(groups) == 0:
            return [], keys
        limits, counts = frozen.limits, groups.defects
        sizes = np.full(len(groups), groups.size)
        z = limits.standardise(counts, sizes)
        what = subject(frozen.station_id, frozen.class_name)
        found: list[Condition] = []
        for (rule, side), hits in rule_hits(z, zone).items():
            recent = np.flatnonzero(hits[-HOLD_SUBGROUPS:])
            if side is not Side.ABOVE or not len(recent):
                continue
            index = len(groups) - min(HOLD_SUBGROUPS, len(groups)) + int(recent[-1])
            found.append(Condition(
                AlarmKind.SPC, frozen.station_id, frozen.class_name, u_rule(rule),
                Phrase("{what}: defects per part up (subgroup {subgroup} after the baseline, at {at}: {defects} "
                       "defects on {size} parts; baseline {baseline} per part): u-chart, Western Electric {rule} "
                       "(z {z}σ)", what=what, subgroup=str(groups.first_index + index + 1),
                       at=When(groups.times[index]), defects=str(counts[index]),
                       size=str(groups.size), baseline=f"{limits.centre:.3f}", rule=rule.value,
                       z=f"{z[index]:+.1f}"),
                side=Side.ABOVE.value, since=groups.times[index]))
        return found, keys

    # -- drift -------------------------------------------------------------------------------

    def _drift(self, frozen: FrozenLimits) -> tuple[list[Condition], set[str]]:
        station = frozen.station_id
        reference = self.store.frames(station, after=frozen.baseline_from, until=frozen.baseline_to, last=500)
        recent = self.store.frames(station, after=frozen.baseline_to, last=self.settings.drift_window)
        drift = DriftSettings()
        prefix = alarm_key(station, ALL_CLASSES, "drift:")
        known = {key for key in self._drift_seen if key.startswith(prefix)}
        known |= {key for key in self.store.active(station) if key.startswith(prefix)}
        if min(len(reference.times), len(recent.times)) < drift.min_frames:
            return [], set()  # too few frames to judge: leave any alarm as it is
        report = compare_windows(reference.stats, recent.stats, drift, recent_times=recent.times,
                                 reference_confidence=reference.confidence,
                                 recent_confidence=recent.confidence,
                                 reference_alignment=reference.aligned, recent_alignment=recent.aligned)
        found: list[Condition] = []
        named = set()
        light_moved = any(f.cause is Cause.LIGHTING for f in report.findings)
        mix = self._moved_with_the_defects(frozen, report.findings, drift)
        for finding in report.findings:
            rule = f"drift:{finding.statistic}"
            key = alarm_key(station, ALL_CLASSES, rule)
            named.add(key)
            self._drift_seen[key] = self._drift_seen.get(key, 0) + 1
            if self._drift_seen[key] < self.settings.drift_confirmations:
                continue
            if finding.source is Source.MODEL:
                kind, text = AlarmKind.MODEL, Phrase(
                    "{what}: the model's confidence moved while the images did not: relabel and retrain",
                    what=subject(station))
            elif finding.statistic in mix:
                kind, text = AlarmKind.MIX, Phrase(
                    "{what}: {change} with the defect rate while the passing parts look as before: the mix of "
                    "parts changed, not the equipment", what=subject(station),
                    change=Phrase("{statistic} {direction}", statistic=Word(finding.statistic),
                                  direction=moved(finding.change)))
            else:
                kind, text = AlarmKind.EQUIPMENT, Phrase("{what}: {finding}", what=subject(station),
                                                         finding=finding_phrase(finding, light_moved=light_moved))
            found.append(Condition(kind, station, ALL_CLASSES, rule, text, since=finding.since))
        for key in known - named:
            self._drift_seen.pop(key, None)
        # A finding not yet confirmed keeps its alarm (if any) neither raised nor cleared.
        unconfirmed = {key for key in named if self._drift_seen.get(key, 0) < self.settings.drift_confirmations}
        return found, (known | named) - unconfirmed

    def _moved_with_the_defects(self, frozen: FrozenLimits, findings: list[Finding], drift: DriftSettings) -> set[str]:
        """The statistics of equipment findings that did not move among the passing frames:
        the images moved because more (or other) defective parts came, which look different,
        not because the light or the lens did. A lamp or a lens that changed moves the
        passing parts' images too. Empty when too few frames passed to judge."""
        equipment = {f.statistic for f in findings if f.source is Source.EQUIPMENT}
        if not equipment:
            return set()
        station = frozen.station_id
        before = self.store.frames(station, after=frozen.baseline_from, until=frozen.baseline_to, last=500,
                                   passing=True)
        after = self.store.frames(station, after=frozen.baseline_to, last=self.settings.drift_window, passing=True)
        if min(len(before.times), len(after.times)) < drift.min_frames:
            return set()
        good = compare_windows(before.stats, after.stats, drift, recent_times=after.times,
                               reference_alignment=before.aligned, recent_alignment=after.aligned)
        return equipment - {f.statistic for f in good.findings if f.source is Source.EQUIPMENT}

    # -- delivery and gauges -----------------------------------------------------------------

    def notify(self, alarm: AlarmRecord) -> None:
        for notifier in self.notifiers:
            try:
                notifier.send(alarm)
            except Exception as error:  # noqa: BLE001 - a dead receiver must not stop alarms
                log.error("alarm delivery failed", extra={"to": notifier.name, "error": str(error)[:300]})

    def _gauges(self) -> None:
        if self.metrics is None:
            return
        now = utcnow()
        self.metrics.defect_rate.clear()
        for row in self.store.rates(now - timedelta(hours=1), now + timedelta(minutes=15), by=Grouping.STATION):
            self.metrics.defect_rate.labels(station=row.key).set(row.defect_rate)
        counts = self.store.open_counts()
        for kind in AlarmKind:
            self.metrics.alarms_open.labels(kind=kind.value).set(counts.get(kind.value, 0))


def payload(alarm: AlarmRecord) -> bytes:
    return json.dumps({"event": "alarm", **alarm.to_json()}, ensure_ascii=False).encode()


class Webhook:
    """POSTs each new alarm as JSON to a URL (5 s timeout)."""

    def __init__(self, url: str) -> None:
        if urlparse(url).scheme not in ("http", "https"):
            raise ValueError(f"QC_ALARM_WEBHOOK {url!r}: use an http:// or https:// URL")
        self.url, self.name = url, f"webhook {urlparse(url).netloc}"

    def send(self, alarm: AlarmRecord) -> None:
        request = urllib.request.Request(self.url, data=payload(alarm), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()


class Mqtt:
    """Publishes each new alarm to <topic>/<station> with QoS 1 (paho-mqtt), one connection per
    delivery: alarms are rare, and a held connection would need its own keep-alive thread."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "mqtt" or not parsed.hostname:
            raise ValueError(f"QC_ALARM_MQTT {url!r}: use mqtt://host:port/topic")
        self.host, self.port = parsed.hostname, parsed.port or 1883
        self.topic = parsed.path.strip("/") or "qc/alarms"
        self.username, self.password = parsed.username, parsed.password
        self.name = f"mqtt {self.host}:{self.port}"

    def send(self, alarm: AlarmRecord) -> None:
        from inspection.mqtt import mqtt_client

        client = mqtt_client(f"qc-alarms-{alarm.id}", username=self.username, password=self.password)
        client.connect(self.host, self.port, keepalive=10)
        client.loop_start()
        try:
            info = client.publish(f"{self.topic}/{alarm.station_id}", payload(alarm), qos=1)
            info.wait_for_publish(timeout=5)
            if not info.is_published():
                raise TimeoutError(f"the broker did not acknowledge alarm {alarm.id} within 5 s")
        finally:
            client.disconnect()
            client.loop_stop()


def notifiers_of(settings: ServeSettings) -> list:
    found: list = []
    if settings.alarm_webhook:
        found.append(Webhook(settings.alarm_webhook))
    if settings.alarm_mqtt:
        found.append(Mqtt(settings.alarm_mqtt))
    return found
