"""Prometheus metrics of the service, served at /metrics.

One registry per app (not the global default), so that two apps in one process, as in the
tests, do not collide.

Review metrics: `qc_review_backlog{station}` is counted in the database at each scrape (the
backlog changes with every frame and decision, in every worker); agreement with the model is
`qc_review_outcomes_total{model_verdict, decision}`, e.g. the share of FAIL confirmed is
`sum(rate(qc_review_outcomes_total{model_verdict="FAIL",decision="defect"}[1d])) /
sum(rate(qc_review_outcomes_total{model_verdict="FAIL",decision!="retracted"}[1d]))`.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

_DELAY_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram("qc_http_request_duration_seconds", "Request latency by route.",
                                 ["method", "route", "status"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("qc_batch_size", "Frames per session.run.",
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64), registry=r)
        self.inference = Histogram("qc_inference_seconds", "Time of one session.run (a batch).",
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("qc_queue_depth", "Frames waiting for inference.", registry=r)
        self.verdicts = Counter("qc_verdicts_total", "Verdicts by station.", ["station", "verdict"], registry=r)
        self.defects = Counter("qc_defects_total", "Counted defects by station and class.",
                               ["station", "class_name"], registry=r)
        self.rejected = Counter("qc_rejected_total", "Frames refused, by reason.", ["reason"], registry=r)
        self.model = Gauge("qc_model_info", "The model serving (value 1).",
                           ["name", "version", "providers"], registry=r)
        self.model_swaps = Counter("qc_model_swaps_total", "Models switched in.", registry=r)
        self.shadow = Counter("qc_shadow_total", "Shadow inferences by agreement with production.",
                              ["agree"], registry=r)

        self.review_decisions = Counter("qc_review_decisions_total", "Review decisions by kind and station.",
                                        ["decision", "station"], registry=r)
        self.review_boxes = Counter("qc_review_box_decisions_total", "Per-box review decisions by kind.",
                                    ["decision"], registry=r)
        self.review_outcomes = Counter("qc_review_outcomes_total",
                                       "Reviewed frames by the model's verdict and the reviewer's decision.",
                                       ["model_verdict", "decision"], registry=r)
        self.review_delay = Histogram("qc_review_delay_seconds", "Time from a verdict to each review decision on it.",
                                      buckets=_DELAY_BUCKETS, registry=r)
        self.backlog = _Backlog()
        r.register(self.backlog)

    def set_model(self, name: str, version: str, providers: list[str]) -> None:
        self.model.clear()
        self.model.labels(name=name, version=version, providers=",".join(providers)).set(1)
        self.model_swaps.inc()


class _Backlog:
    """qc_review_backlog{station}: asks `source` (the review store's backlog) at each scrape."""

    def __init__(self) -> None:
        self.source: Callable[[], dict[str, int]] | None = None

    def collect(self):
        family = GaugeMetricFamily("qc_review_backlog", "Flagged frames not yet reviewed, by station.",
                                   labels=["station"])
        if self.source is not None:
            for station, count in sorted(self.source().items()):
                family.add_metric([station], count)
        yield family

    def describe(self):
        return []
