"""Header values as text: UTF-8 part ids whatever way the client sent them.

HTTP header values are bytes; Starlette reads them as latin-1, so a part id "Lot-Ä7" sent as
raw UTF-8 arrived as "Lot-Ã\\x847" and was stored garbled (issue 9). Accepted here:

- raw UTF-8 bytes (what most clients send): the latin-1 text is turned back into its bytes
  and decoded as UTF-8;
- RFC 8187 extended notation, `UTF-8''Lot-%C3%847` (for clients and proxies that keep
  headers ASCII), percent-decoded as UTF-8;
- plain ASCII, as it is.

Bytes that are not UTF-8 (a latin-1 "Ä" alone) are refused with 400 and the fix, rather than
guessed at. Control characters are refused too: a part id is printed on labels and pages.

Example::

    >>> part_id("Lot-\\u00c3\\u00847")         # raw UTF-8 bytes, as Starlette hands them over
    'Lot-Ä7'
    >>> part_id("UTF-8''Lot-%C3%847")
    'Lot-Ä7'
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_to_bytes

from fastapi import HTTPException

_RFC8187 = "utf-8''"
MAX_PART_ID = 128


def part_id(raw: str | None, *, header: str = "X-Part-Id") -> str | None:
    """The header's text (None when absent or blank); 400 when it is not UTF-8, 422 when it
    is longer than 128 characters."""
    value = (raw or "").strip()
    if not value:
        return None
    try:
        if value[: len(_RFC8187)].lower() == _RFC8187:
            text = unquote_to_bytes(value[len(_RFC8187):]).decode("utf-8")
        else:
            text = value.encode("latin-1").decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as error:  # undecodable, or not latin-1
        raise HTTPException(
            400, f"{header} is not UTF-8 text ({error.reason}); send UTF-8 bytes, or RFC 8187 "
                 f"notation: {header}: UTF-8''Lot-%C3%847") from error
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise HTTPException(400, f"{header} holds control characters; send printable text")
    if len(text) > MAX_PART_ID:
        raise HTTPException(422, f"{header} has {len(text)} characters; at most {MAX_PART_ID}")
    return text.strip() or None
