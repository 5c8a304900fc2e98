"""Temporary stand-in for shadowd.edges.spool.Spool (CLIPS is building it concurrently).

Same API as agreed: put / pending / lease / release / ack / path / stats. Deleted as soon as the
real spool lands.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SpooledClip:
    clip_id: str
    priority: int
    t_ns: int
    size_bytes: int
    meta: dict | None = None


class Spool:
    def __init__(self, root: Path, quota_bytes: int):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = quota_bytes
        self._leased: set[str] = set()

    def put(self, clip_bytes: bytes, *, priority: int, t_ns: int, meta=None) -> SpooledClip:
        cid = hashlib.sha256(clip_bytes).hexdigest()
        tmp = self.root / f"{cid}.tmp"
        tmp.write_bytes(clip_bytes)
        os.replace(tmp, self.root / f"{cid}.shdc")
        (self.root / f"{cid}.meta").write_text(json.dumps({"priority": priority, "t_ns": t_ns}))
        return SpooledClip(cid, priority, t_ns, len(clip_bytes), meta)

    def pending(self) -> list[SpooledClip]:
        out = []
        for p in sorted(self.root.glob("*.shdc")):
            cid = p.stem
            m = json.loads((self.root / f"{cid}.meta").read_text())
            out.append(SpooledClip(cid, m["priority"], m["t_ns"], p.stat().st_size))
        return sorted(out, key=lambda c: (-c.priority, c.t_ns))

    def lease(self, clip_id: str) -> Path:
        if not (self.root / f"{clip_id}.shdc").exists():
            raise KeyError(clip_id)
        self._leased.add(clip_id)
        return self.path(clip_id)

    def release(self, clip_id: str) -> None:
        self._leased.discard(clip_id)

    def ack(self, clip_id: str) -> None:
        (self.root / f"{clip_id}.shdc").unlink()
        (self.root / f"{clip_id}.meta").unlink()
        self._leased.discard(clip_id)

    def path(self, clip_id: str) -> Path:
        return self.root / f"{clip_id}.shdc"

    def stats(self) -> dict:
        return {"clips": len(self.pending())}
