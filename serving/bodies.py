"""Request bodies read with a limit: what the inspect route and the v2 protocol share.

Example::

    data = await read_limited(request, limit=32 * 1024 * 1024)   # 413 past the limit
    jpeg = await frame_bytes(request, limit)                      # image/* or multipart 'file'
"""

from __future__ import annotations

import asyncio

from fastapi import HTTPException, Request

ACCEPTED = ("image/jpeg", "image/png", "image/bmp", "multipart/form-data")

_BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": _BINARY,
            "image/png": _BINARY,
            "image/bmp": _BINARY,
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                           "required": ["file"]}
            },
        },
    }
}
"""OpenAPI's description of an image body (`openapi_extra=IMAGE_BODY`): what `frame_bytes` reads."""


async def read_limited(request: Request, limit: int, *, timeout_s: float | None = None) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (before it is all read),
    and with 408 when it has not all arrived within `timeout_s` (QC_BODY_TIMEOUT_S): a client
    that trickles its body a byte at a time must not hold a connection and its buffer forever."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {int(declared):,} bytes is over the limit of {limit:,}")
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"body is over the limit of {limit:,} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout_s)
    except TimeoutError as error:
        raise HTTPException(408, f"the body did not arrive within {timeout_s:g} s ({size:,} bytes came); "
                                 "send it at once (QC_BODY_TIMEOUT_S)",
                            headers={"Connection": "close"}) from error
    return b"".join(chunks)


async def frame_bytes(request: Request, limit: int, *, timeout_s: float | None = None) -> bytes:
    """An encoded frame from an image/* body or a multipart body's 'file' part (415 for other
    content types, 400 for a malformed form)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED:
        raise HTTPException(
            415, f"content type {content_type or 'missing'!r}: send image/jpeg, image/png, image/bmp "
                 "or multipart/form-data with a 'file' part")
    body = await read_limited(request, limit, timeout_s=timeout_s)
    if content_type != "multipart/form-data":
        return body
    request._body = body  # Starlette parses the form from the cached body
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as error:
        raise HTTPException(400, f"malformed multipart body: {error}") from error
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise HTTPException(400, "multipart body has no 'file' part holding the image")
    return await upload.read()
