"""Bodies as the controller writes them: Jackson-style pretty JSON, or XML (the default)."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

# XML element names: (list element, item element) per resource (spec §3, §4.4).
XML_NAMES = {
    "applications": ("applications", "application"),
    "tiers": ("tiers", "tier"),
    "nodes": ("nodes", "node"),
    "business-transactions": ("business-transactions", "business-transaction"),
    "backends": ("backends", "backend"),
    "metrics": ("metric-items", "metric-item"),
    "metric-data": ("metric-datas", "metric-data"),
}
_SCALAR_LIST_ITEM = {"metricValues": "metric-value", "properties": "property"}


def jackson(value: object, level: int = 0) -> str:
    """Pretty JSON the way the controller's Jackson prints it: ``"key" : value``, ``[ {``,
    ``[ ]`` for an empty list; objects indent by two spaces per enclosing object."""
    if isinstance(value, dict):
        if not value:
            return "{ }"
        pad = "  " * (level + 1)
        body = ",\n".join(f"{pad}{_key(k)} : {jackson(v, level + 1)}" for k, v in value.items())
        return "{\n" + body + "\n" + "  " * level + "}"
    if isinstance(value, list):
        if not value:
            return "[ ]"
        fast = _flat_int_dicts(value, level)
        if fast is not None:
            return fast
        return "[ " + ", ".join(jackson(v, level) for v in value) + " ]"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:  # the bulk of metric values: skip the json module
        return str(value)
    return json.dumps(value)


def _flat_int_dicts(items: list, level: int) -> str | None:
    """Fast path for the bulk of metric data: dicts of the same keys holding only ints/bools.
    One %-template per list instead of a recursive call per value (~10x faster)."""
    first = items[0]
    if not isinstance(first, dict) or not first or not all(type(v) in (int, bool) for v in first.values()):
        return None
    keys = tuple(first)
    bools = [i for i, v in enumerate(first.values()) if type(v) is bool]
    pad = "  " * (level + 1)
    fmt = ["%s" if i in bools else "%d" for i in range(len(keys))]
    tmpl = "{\n" + ",\n".join(f"{pad}{_key(k)} : {f}" for k, f in zip(keys, fmt)) + "\n" + "  " * level + "}"
    out = []
    try:
        for d in items:
            if tuple(d) != keys:
                return None
            vals = list(d.values())
            for i in bools:
                if type(vals[i]) is not bool:
                    return None
                vals[i] = "true" if vals[i] else "false"
            out.append(tmpl % tuple(vals))
    except TypeError:  # a value of another type: let the general path print it
        return None
    return "[ " + ", ".join(out) + " ]"


_KEYS: dict[str, str] = {}


def _key(k: str) -> str:
    s = _KEYS.get(k)
    if s is None:
        s = _KEYS[k] = json.dumps(k)
    return s


def to_json(items: list[dict]) -> bytes:
    return jackson(items).encode()


def to_xml(resource: str, items: list[dict]) -> bytes:
    outer, inner = XML_NAMES[resource]
    parts = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>', f"<{outer}>"]
    for item in items:
        parts.append(f"<{inner}>{_xml_fields(item)}</{inner}>")
    parts.append(f"</{outer}>")
    return "\n".join(parts).encode()


def _xml_fields(item: dict) -> str:
    out = []
    for k, v in item.items():
        if isinstance(v, list):
            child = _SCALAR_LIST_ITEM.get(k, "item")
            inner = "".join(f"<{child}>{_xml_fields(x) if isinstance(x, dict) else _xml_scalar(x)}</{child}>" for x in v)
            out.append(f"<{k}>{inner}</{k}>" if v else f"<{k}/>")
        elif v is None:
            out.append(f"<{k}/>")
        else:
            out.append(f"<{k}>{_xml_scalar(v)}</{k}>")
    return "".join(out)


def _xml_scalar(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return escape(str(v))


def malformed(items: list[dict]) -> list[dict]:
    """Valid JSON that breaks the contract: numbers as strings, keys missing (a fault)."""
    out = []
    for item in items:
        bad = {k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in item.items()}
        for key in ("frequency", "id", "metricPath"):
            bad.pop(key, None)
        if isinstance(bad.get("metricValues"), list):
            bad["metricValues"] = [{k: str(v) for k, v in p.items() if k != "value"} for p in bad["metricValues"]]
        out.append(bad)
    return out
