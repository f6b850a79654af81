"""What an ONNX file says about itself, read without an engine: its custom metadata.

Example::

    from inspection.detect.onnx_file import read_metadata

    read_metadata("model.onnx")["names"]      # "{0: 'open', 1: 'short', ...}"

A remote backend (Triton) runs the model elsewhere, yet the detector still needs the class
names, input size and stride that travel inside the file. Loading an ONNX Runtime session only
to read them would allocate the whole graph; this walks the top level of the protobuf
(`ModelProto.metadata_props`, field 14, each a `StringStringEntryProto` of key 1 and value 2)
and skips the graph by its length, so it reads a few hundred bytes past the weights' headers
and needs neither onnx nor onnxruntime.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inspection.errors import ModelError

_METADATA_PROPS = 14
_Bytes = bytes | mmap.mmap  # the file, read whole or mapped
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _varint(data: _Bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data):
            raise ValueError("truncated varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(data: _Bytes, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value or (start, end) of a length-delimited field)."""
    offset = start
    while offset < end:
        tag, offset = _varint(data, offset)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, offset = _varint(data, offset)
            yield number, wire, value
        elif wire == _LEN:
            length, offset = _varint(data, offset)
            if offset + length > end:
                raise ValueError(f"field {number} runs past the end")
            yield number, wire, (offset, offset + length)
            offset += length
        elif wire == _FIXED64:
            offset += 8
        elif wire == _FIXED32:
            offset += 4
        else:
            raise ValueError(f"wire type {wire} of field {number}")


def _entry(data: _Bytes, start: int, end: int) -> tuple[str, str]:
    key = value = ""
    for number, wire, span in _fields(data, start, end):
        if wire == _LEN and number in (1, 2):
            text = bytes(data[span[0] : span[1]]).decode("utf-8")
            key, value = (text, value) if number == 1 else (key, text)
    return key, value


def read_metadata(path: str | Path) -> dict[str, str]:
    """The model's custom metadata (what ONNX Runtime's `custom_metadata_map` gives)."""
    path = Path(path)
    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return dict(_entry(data, *span) for number, wire, span in _fields(data, 0, len(data))
                        if number == _METADATA_PROPS and wire == _LEN)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file; pass the path of an .onnx file") from None
    except (ValueError, UnicodeDecodeError, OSError) as error:  # mmap of an empty file: ValueError
        raise ModelError(f"{path}: not an ONNX file ({error}); export the model again with "
                         "qc export") from error
