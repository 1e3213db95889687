"""S3's XML: answers built with ElementTree, request bodies parsed with defusedxml.

defusedxml refuses entity expansion, external entities and DTDs, so a hostile body (a
"billion laughs") fails as MalformedXML instead of eating the server's memory.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from email.utils import formatdate
from typing import Any

from tusk.s3.errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_BODY = 2 << 20  # an XML request body (DeleteObjects of 1,000 long keys fits)


def iso(ts: float) -> str:
    """A time as S3 writes it in XML: 2026-12-06T17:30:00.000Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def document(root: str, fields: Iterable[tuple[str, Any]] = (), ns: bool = True) -> ET.Element:
    """An element ``root`` with a child per (tag, value); a value may be an element's fields."""
    el = ET.Element(root, {"xmlns": NS} if ns else {})
    add(el, fields)
    return el


def add(parent: ET.Element, fields: Iterable[tuple[str, Any]]) -> ET.Element:
    for tag, value in fields:
        child = ET.SubElement(parent, tag)
        if isinstance(value, list):
            add(child, value)
        elif isinstance(value, bool):
            child.text = "true" if value else "false"
        elif value is not None:
            child.text = str(value)
    return parent


def to_bytes(el: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(el, encoding="utf-8")


def error_document(code: str, message: str, resource: str, request_id: str) -> bytes:
    return to_bytes(
        document(
            "Error",
            [("Code", code), ("Message", message), ("Resource", resource),
             ("RequestId", request_id)],
            ns=False,
        )
    )  # fmt: skip


def parse(body: bytes) -> ET.Element:
    """A request's XML body, namespace stripped from every tag; MalformedXML when it is not."""
    from defusedxml import ElementTree as SafeET
    from defusedxml.common import DefusedXmlException

    if len(body) > MAX_BODY:
        raise S3Error("MalformedXML", f"the XML body is over {MAX_BODY >> 20} MiB")
    try:
        root = SafeET.fromstring(body)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise S3Error("MalformedXML", f"the XML body is not well-formed: {exc}") from None
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def text(el: ET.Element, tag: str) -> str | None:
    child = el.find(tag)
    return None if child is None else (child.text or "")
