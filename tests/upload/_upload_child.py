"""Child process for the kill -9 test: ``python -m tests.upload._upload_child SPOOL_ROOT CONFIG_JSON``.

Runs the uploader on an existing spool until killed (the test kills it with SIGKILL mid-upload).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from shadowd.core.upload_policy import UploadConfig
from shadowd.edges.uploader import Uploader
from shadowd.edges.spool import Spool

if __name__ == "__main__":
    spool = Spool(Path(sys.argv[1]), quota_bytes=1 << 32)
    uploader = Uploader(spool, UploadConfig.from_dict(json.loads(sys.argv[2])))
    uploader.run_forever(threading.Event())
