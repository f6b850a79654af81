"""Where Label Studio is and how qc talks to it: QC_LABEL_* variables (or QC_CONFIG's YAML).

Example::

    QC_LABEL_STUDIO_URL=http://labels.plant.local:8080 QC_LABEL_STUDIO_TOKEN=... qc label setup

    settings = LabelSettings()
    settings.label_studio_url, settings.label_project
"""

from __future__ import annotations

from pydantic import Field

from inspection.data.versions import parse_ref
from inspection.settings import Settings


class LabelSettings(Settings):
    label_studio_url: str = Field(default="", description="Label Studio's base URL, e.g. http://labels:8080.")
    label_studio_token: str = Field(
        default="", description="A Label Studio API token (Account & Settings; a legacy token).")
    label_project: str = Field(
        default="qc-defects", min_length=1, max_length=128,
        description="Title of the Label Studio project qc creates and pushes to.")
    label_dataset: str = Field(
        default="", description="Dataset that pulled labels extend (a new version each pull); empty: "
        "the dataset the production model was trained on, else 'line'.")
    label_webhook_secret: str = Field(
        default="", description="Shared secret Label Studio sends in X-QC-Webhook-Secret; empty "
        "refuses every webhook.")
    label_policy: str = Field(
        default="", max_length=4000,
        description="The sampling policy file (a copy of labeling/sampling/policy.yaml); empty: the shipped "
        "one. `qc label sample`, `qc label pull` and every `qc loop` turn read it (their --policy wins).")
    label_push_batch: int = Field(default=20, ge=1, le=500, description="Tasks per import request.")
    label_timeout_s: float = Field(default=30.0, gt=0, description="Per request to Label Studio.")

    def dataset_for(self, trained_on: str | None) -> str:
        """The dataset pulled labels extend: QC_LABEL_DATASET, else the dataset of `trained_on`
        (the production model's card's dataset version, e.g. "line@v3"), else "line". The one
        resolution: the bridge pulls into it and `qc loop` trains on it."""
        if self.label_dataset:
            return self.label_dataset
        return parse_ref(trained_on)[0] if trained_on else "line"
