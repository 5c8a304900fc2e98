"""Prometheus text exposition of the service's status tree. Pure: dict in, text out.

The status tree is the nested dict ``shadowd status --json`` prints. Every numeric leaf becomes
one sample: the path joins with ``_`` into the metric name, prefixed ``shadowd_``. A dict whose
keys are label values is marked by a ``"__label__"`` key naming the label, e.g.
``{"__label__": "priority", "0": 3, "5": 1}`` → ``shadowd_spool_clips{priority="0"} 3``.
Booleans become 0/1; strings are exported as ``shadowd_..._info{value="..."} 1``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")


def _metric_name(parts: list[str]) -> str:
    return _NAME_OK.sub("_", "_".join(["shadowd", *parts]))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def to_prometheus(tree: Mapping, *, _path: list[str] | None = None, _labels: str = "") -> str:
    """Render a status tree as Prometheus text format 0.0.4 (one sample per numeric leaf)."""
    lines: list[str] = []
    _walk(tree, _path or [], _labels, lines)
    return "".join(line + "\n" for line in lines)


def _walk(node: Mapping, path: list[str], labels: str, out: list[str]) -> None:
    label_name = node.get("__label__") if isinstance(node, Mapping) else None
    for key, value in node.items():
        if key == "__label__":
            continue
        if label_name:
            extra = f'{label_name}="{_escape(str(key))}"'
            sub_labels = f"{labels},{extra}" if labels else extra
            sub_path = path
        else:
            sub_labels = labels
            sub_path = [*path, str(key)]
        if isinstance(value, Mapping):
            _walk(value, sub_path, sub_labels, out)
        elif isinstance(value, (bool, int, float)):
            name = _metric_name(sub_path)
            out.append(f"{name}{{{sub_labels}}} {_fmt(value)}" if sub_labels else f"{name} {_fmt(value)}")
        elif isinstance(value, str):
            name = _metric_name([*sub_path, "info"])
            lab = f'value="{_escape(value)}"'
            lab = f"{sub_labels},{lab}" if sub_labels else lab
            out.append(f"{name}{{{lab}}} 1")
        # lists and None carry no sample
