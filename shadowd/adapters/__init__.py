"""Platform adapter registry (the python-can model).

``ADAPTERS`` maps a lowercase key to ``(module, class)`` strings; nothing is imported until a
key is resolved. Out-of-tree adapters register through the ``shadowd.adapter`` entry-point
group (``name = "package.module:Class"``). An unknown key, or one whose module fails to import,
raises AdapterNotAvailableError naming the known keys.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..errors import AdapterNotAvailableError

ADAPTERS: dict[str, tuple[str, str]] = {
    "desktop": ("shadowd.adapters.desktop", "DesktopAdapter"),
    "nt2": ("shadowd.adapters.nt2", "NT2Adapter"),
    "nt2_5": ("shadowd.adapters.nt2_5", "NT25Adapter"),
    "nt3": ("shadowd.adapters.nt3", "NT3Adapter"),
}

ENTRY_POINT_GROUP = "shadowd.adapter"


def _entry_point_adapters() -> dict[str, tuple[str, str]]:
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module, _, cls = ep.value.partition(":")
        found[ep.name] = (module, cls)
    return found


def known_adapters() -> list[str]:
    return sorted({**ADAPTERS, **_entry_point_adapters()})


def get_adapter_class(name: str):
    """The adapter class registered under ``name`` (imported now)."""
    table = {**_entry_point_adapters(), **ADAPTERS}
    if name not in table:
        raise AdapterNotAvailableError(
            f"unknown platform adapter {name!r}; known adapters: {known_adapters()}; "
            f"fix 'adapter' in the platform profile or install the package that provides it")
    module_name, cls_name = table[name]
    try:
        return getattr(importlib.import_module(module_name), cls_name)
    except Exception as err:  # noqa: BLE001 - any import failure means "not available here"
        raise AdapterNotAvailableError(
            f"adapter {name!r} ({module_name}.{cls_name}) cannot be loaded: {err}") from err


def create_adapter(platform):
    """Instantiate the adapter a ``Platform`` names."""
    return get_adapter_class(platform.adapter)(platform)
