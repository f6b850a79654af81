"""Webhooks from outside: Label Studio's annotations, recorded as they are made.

Set up with `qc label setup --webhook-url http://<this service>/v1/hooks/label-studio`, which
registers the hook with the shared secret of QC_LABEL_WEBHOOK_SECRET in the
`X-QC-Webhook-Secret` header; the service must have the same variable. The hook only records
the annotation against its task (inspection/store/labels.py: the task becomes `labelled`);
`qc label pull` or `qc loop` turn what was recorded into the next dataset version, so a burst
of labelling makes one version, not one per box.

Answers: 200 {"recorded": true|false, ...}; 401 without the right secret (or none configured);
400 for a body that is not Label Studio's payload. Unknown tasks (not pushed by qc) are
acknowledged with recorded false, so Label Studio does not keep a failing hook.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request

from inspection.store.schema import SQL_INT_MAX
from labeling.settings import LabelSettings
from serving.deps import LabelsDep

router = APIRouter(prefix="/v1/hooks", tags=["labeling"])

ANNOTATION_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}
_PAYLOAD = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "Label Studio's webhook payload (send_payload on)."}}}}}


async def _payload(request: Request) -> dict[str, Any]:
    """The JSON object the hook was sent (its size is bounded by serving/body_limits.py)."""
    try:
        payload = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as error:
        raise HTTPException(400, f"the body is not JSON ({error}); expected Label Studio's payload") from None
    if not isinstance(payload, dict):
        raise HTTPException(400, "expected Label Studio's payload, a JSON object")
    return payload


@router.post("/label-studio", openapi_extra=_PAYLOAD)
async def label_studio(
    labels: LabelsDep,
    request: Request,
    secret: Annotated[str | None, Header(alias="X-QC-Webhook-Secret")] = None,
) -> dict[str, Any]:
    settings = LabelSettings()
    expected = settings.label_webhook_secret
    if not expected or not secret or not secrets.compare_digest(secret.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong X-QC-Webhook-Secret; the service's QC_LABEL_WEBHOOK_SECRET "
                                 "must be the secret qc label setup gave Label Studio")
    payload = await _payload(request)  # read only once the secret is right (issue 25)
    action = payload.get("action")
    if action not in ANNOTATION_ACTIONS:
        return {"recorded": False, "reason": f"action {action!r} is not an annotation"}
    annotation, task = payload.get("annotation"), payload.get("task")
    task_id = (task or {}).get("id") if isinstance(task, dict) else (annotation or {}).get("task")
    if not isinstance(annotation, dict) or not isinstance(task_id, int) or not isinstance(annotation.get("id"), int):
        raise HTTPException(400, "expected Label Studio's payload with annotation.id and task.id; turn on "
                                 "'send payload' for the webhook")
    if not (0 <= task_id <= SQL_INT_MAX and 0 <= annotation["id"] <= SQL_INT_MAX):
        raise HTTPException(400, f"task.id and annotation.id must be in the range 0 to {SQL_INT_MAX}; "
                                 "is this Label Studio's payload?")
    if annotation.get("was_cancelled"):
        return {"recorded": False, "reason": "the annotation was cancelled (skipped)"}
    recorded = await asyncio.to_thread(
        labels.annotated, settings.label_project, task_id, annotation_id=annotation["id"],
        result=list(annotation.get("result") or []),
        annotated_at=str(annotation.get("updated_at") or annotation.get("created_at") or ""))
    return {"recorded": recorded, "task": task_id, "annotation": annotation["id"]}
