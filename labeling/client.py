"""Label Studio's API as qc uses it; the only module that imports label-studio-sdk.

Example::

    studio = Studio.connect(LabelSettings())          # ConfigError without URL or token
    project = studio.find_project("qc-defects")       # Project(id, title, label_config) or None
    task_ids = studio.import_tasks(project.id, tasks) # in the order given
    studio.annotations(task_ids[0])                   # plain dicts, newest last

Every failure to reach the server (refused, reset, timed out, 5xx) is `LabelStudioUnavailable`,
which the push queue answers with a backoff; a refused token is a `ConfigError` that says
which variable to fix. Both name the URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inspection.errors import ConfigError, QCError
from labeling.settings import LabelSettings


class LabelStudioUnavailable(QCError):
    """Label Studio did not answer (down, unreachable, overloaded): try again later."""


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    label_config: str


class Studio:
    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0) -> None:
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        self.client = LabelStudio(base_url=self.url, api_key=token, timeout=timeout_s)

    @classmethod
    def connect(cls, settings: LabelSettings) -> Studio:
        if not settings.label_studio_url or not settings.label_studio_token:
            raise ConfigError("Label Studio is not configured: set QC_LABEL_STUDIO_URL (e.g. "
                              "http://labels:8080) and QC_LABEL_STUDIO_TOKEN (its API token)")
        return cls(settings.label_studio_url, settings.label_studio_token, timeout_s=settings.label_timeout_s)

    def _call(self, what: str, function, *args, **kwargs):
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        try:
            return function(*args, **kwargs)
        except (httpx.TransportError, ConnectionError, TimeoutError) as error:
            raise LabelStudioUnavailable(f"Label Studio at {self.url} did not answer ({what}: "
                                         f"{type(error).__name__}: {error}); queued work is retried") from error
        except ApiError as error:
            status = error.status_code or 0
            if status in (401, 403):
                raise ConfigError(f"Label Studio at {self.url} refused the token ({status}, {what}); set "
                                  "QC_LABEL_STUDIO_TOKEN to a legacy API token of a project member") from error
            if status >= 500 or status in (408, 429):
                raise LabelStudioUnavailable(f"Label Studio at {self.url} answered {status} ({what}); "
                                             "queued work is retried") from error
            raise QCError(f"Label Studio at {self.url} refused {what} ({status}: {str(error.body)[:300]})") from error

    # -- projects --------------------------------------------------------------------------

    def find_project(self, title: str) -> Project | None:
        found = self._call("listing projects", lambda: list(self.client.projects.list(title=title)))
        for project in found:
            if project.title == title:
                full = self._call("reading the project", self.client.projects.get, id=project.id)
                return Project(id=full.id, title=full.title, label_config=full.label_config or "")
        return None

    def create_project(self, title: str, label_config: str) -> Project:
        created = self._call("creating the project", self.client.projects.create, title=title,
                             label_config=label_config, description="Frames flagged by qc; the "
                             "pre-annotations are the model's boxes or a QC reviewer's.")
        return Project(id=created.id, title=title, label_config=label_config)

    def set_label_config(self, project_id: int, label_config: str) -> None:
        self._call("updating the label config", self.client.projects.update, id=project_id,
                   label_config=label_config)

    # -- tasks -----------------------------------------------------------------------------

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        response = self._call("importing tasks", self.client.projects.import_tasks, project_id,
                              request=list(tasks), return_task_ids=True)
        ids = list(response.task_ids or [])
        if len(ids) != len(tasks):
            raise QCError(f"Label Studio at {self.url} created {len(ids)} tasks for {len(tasks)} sent")
        return [int(i) for i in ids]

    def task_ids_by_inspection(self, project_id: int) -> dict[str, int]:
        """inspection_id -> task id for every task of the project (for recovering a push that
        died mid-request: did Label Studio create its tasks?)."""
        def collect() -> dict[str, int]:
            found: dict[str, int] = {}
            task: Any
            for task in self.client.tasks.list(project=project_id, fields="task_only"):
                inspection_id = (task.data or {}).get("inspection_id")
                if inspection_id and inspection_id not in found:
                    found[inspection_id] = int(task.id)
            return found

        return self._call("listing tasks", collect)

    def annotations(self, task_id: int) -> list[dict[str, Any]]:
        found = self._call("reading annotations", self.client.annotations.list, id=task_id)
        return [a.model_dump(mode="json") for a in found]

    def annotate(self, task_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        """Submit an annotation as a labeller would (tests, the benchmark's oracle)."""
        created = self._call("creating an annotation", self.client.annotations.create, id=task_id,
                             result=result)
        return created.model_dump(mode="json")

    # -- webhooks --------------------------------------------------------------------------

    def ensure_webhook(self, project_id: int, url: str, secret: str) -> bool:
        """A webhook of the project posting annotations to `url` with the secret header;
        False when it was there already."""
        existing = self._call("listing webhooks", lambda: list(self.client.webhooks.list(project=str(project_id))))
        if any(hook.url == url for hook in existing):
            return False
        self._call("creating the webhook", self.client.webhooks.create, url=url, project=project_id,
                   send_payload=True, send_for_all_actions=False, headers={"X-QC-Webhook-Secret": secret},
                   actions=["ANNOTATION_CREATED", "ANNOTATION_UPDATED"], is_active=True)
        return True
