"""Load platform profiles from TOML files (the I/O half of shadowd.core.platform).

Profiles are looked up by name in, in order: the directory named by ``$SHADOWD_PLATFORMS_DIR``
and the repository's ``platforms/``; a path ending in ``.toml`` is read as is. DBC file names
in a profile resolve against ``shadowd/data/dbc`` unless absolute.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path

from ..core.platform import Platform, parse_platform
from ..errors import ConfigError

DBC_DIR = Path(__file__).resolve().parents[1] / "data" / "dbc"
_REPO_PLATFORMS = Path(__file__).resolve().parents[2] / "platforms"


def platform_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("SHADOWD_PLATFORMS_DIR"):
        dirs.append(Path(os.environ["SHADOWD_PLATFORMS_DIR"]))
    dirs.append(_REPO_PLATFORMS)
    return dirs


def available_platforms() -> list[str]:
    """Names of every profile found on the search path."""
    names = set()
    for d in platform_dirs():
        if d.is_dir():
            names |= {p.stem for p in d.glob("*.toml")}
    return sorted(names)


def load_platform(name_or_path: str | os.PathLike) -> Platform:
    """Read and validate a profile by name (``"nt2"``) or path (``"x/y.toml"``).

    Raises:
        ConfigError: unknown name (the message lists the known ones), unreadable file, TOML
            syntax error (with its line), or an invalid value (with its key).
    """
    text = str(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        path = Path(text)
    else:
        path = next((d / f"{text}.toml" for d in platform_dirs() if (d / f"{text}.toml").is_file()), None)
        if path is None:
            raise ConfigError(f"unknown platform {text!r}; known platforms: {available_platforms()} "
                              f"(searched {[str(d) for d in platform_dirs()]})")
    return _load_path(str(path.resolve()) if path.exists() else str(path))


@lru_cache(maxsize=32)
def _load_path(path: str) -> Platform:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as err:
        raise ConfigError(f"platform profile {path} does not exist; pass a name from {available_platforms()}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: TOML syntax error: {err}; fix the file") from err
    return parse_platform(data, source=path)


def dbc_path(dbc: str) -> Path:
    """Resolve a profile's DBC reference to a file path."""
    p = Path(dbc)
    return p if p.is_absolute() else DBC_DIR / dbc
