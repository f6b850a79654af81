"""Prometheus metrics of the service, served at /metrics.

One registry per app (not the global default), so that two apps in one process, as in the
tests, do not collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.damaged = Counter("qc_damaged_images_total",
                               "Frames with corrupt or incomplete pixel data, by station and what the "
                               "station's rules did with them (refuse: 400, review: a REVIEW verdict).",
                               ["station", "outcome"], registry=r)
        self.client_aborts = Counter("qc_client_aborts_total",
                                     "Requests whose client disconnected before the answer (not errors "
                                     "of the service), by route.", ["route"], registry=r)
        self.model = Gauge("qc_model_info", "The model serving (value 1).",
                           ["name", "version", "providers"], registry=r)
        self.pointer_followed = Gauge(
            "qc_model_pointer_followed",
            "1 while the served model is the registry's production version; 0 while the pointer "
            "names a version this service could not load (see /readyz).", registry=r)
        self.pointer_followed.set(1)
        self.model_swaps = Counter("qc_model_swaps_total", "Models switched in.", registry=r)
        self.shadow = Counter("qc_shadow_total", "Shadow inferences by agreement with production.",
                              ["agree"], registry=r)

    def set_model(self, name: str, version: str, providers: list[str]) -> None:
        self.model.clear()
        self.model.labels(name=name, version=version, providers=",".join(providers)).set(1)
        self.model_swaps.inc()
