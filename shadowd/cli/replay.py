"""``shadowd replay INPUT... --out DIR``: recorded drives and clips through a candidate model.

Parses arguments, runs ``shadowd.replay.job.run_job`` and prints a short summary; all logic
lives in ``shadowd.replay``. Exit status 0 when every input replayed, 3 when some inputs were
bad (reported in report.json), 1 (via the CLI's error handler) when nothing could run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_SOME_INPUTS_FAILED = 3


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay",
        help="replay recorded drives / clips through a candidate model and report what it would upload",
        description="Replay CAN logs (.log/.asc/.blf/.trc), canonical CSV, MCAP and shadowd clips "
        "through the same pipeline the vehicle runs, on a simulated clock. Writes clips/, "
        "report.json (deterministic), timing.json and report.html into --out.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="input files or directories")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    p.add_argument("--model", metavar="M.onnx", help="candidate model (default: the bundled reference model)")
    p.add_argument("--config", metavar="C.json", help="service config or trigger list (default: built-in triggers)")
    p.add_argument("--platform", default="desktop", help="platform profile decoding CAN logs (default: desktop)")
    p.add_argument("--baseline", metavar="B.onnx", help="A/B: also replay this model and report differences")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help=f"local worker processes (0 = all {os.cpu_count()} cores; default 1)")
    p.add_argument("--ray", metavar="ADDRESS", help="spread inputs over a Ray cluster ('local' starts one)")
    p.add_argument("--speed", type=float, metavar="X", help="pace the simulated clock at X times real time")
    p.add_argument("--labels", metavar="DIR",
                   help="directory of <input file name>.labels.json files (default: beside each input)")
    p.add_argument("--sweep", action="append", default=[], metavar="TRIGGER:PARAM=v1,v2",
                   help="sweep a trigger parameter (threshold[:N] = the N-th number in its expression); repeatable")
    p.add_argument("--target-upload-share", type=float, default=0.05, metavar="F",
                   help="sweep target: uploaded seconds / driven seconds (default 0.05)")
    p.add_argument("--vehicle-id", default="replay", help="vehicle id written into clips (default: replay)")
    p.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a TTY")
    p.add_argument("--no-html", action="store_true", help="skip report.html")
    p.set_defaults(func=_do_replay)


def _do_replay(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..replay.job import ReplayJob, run_job
    from ..replay.runner import ReplayOptions

    if args.speed is not None and args.speed <= 0:
        raise ConfigError(f"--speed {args.speed}: must be > 0 (1 = real time, 10 = ten times faster)")
    if args.workers < 0:
        raise ConfigError(f"--workers {args.workers}: must be >= 0 (0 = all cores)")
    job = ReplayJob(
        inputs=args.inputs,
        out_dir=args.out,
        options=ReplayOptions(model_path=args.model, platform=args.platform, config_path=args.config,
                              speed=args.speed, vehicle_id=args.vehicle_id, labels_dir=args.labels),
        workers=args.workers or (os.cpu_count() or 1),
        ray_address=args.ray,
        baseline_path=args.baseline,
        sweep=args.sweep,
        target_upload_share=args.target_upload_share,
        progress=args.progress or sys.stderr.isatty(),
        html=not args.no_html,
    )
    report, timing, written = run_job(job)
    tot = report["totals"]
    print(f"replayed {tot['inputs_ok']}/{tot['inputs']} inputs, {tot['driven_s']} s of driving in "
          f"{timing['wall_s']} s ({timing['x_realtime']}x real time): {tot['clips']} clips, "
          f"{report['upload']['bytes']} bytes")
    for name, t in report["triggers"].items():
        print(f"  {name}: {t['count']} fired, {t['rate_per_h']}/h, {t['clips']} clips")
    for row in report["inputs"]:
        if row["status"] != "ok":
            print(f"  FAILED {row['input']}: {row['error']}")
    if "ab" in report:
        ab = report["ab"]
        print(f"  A/B: {ab['triggers_only_candidate']} triggers only the candidate fires, "
              f"{ab['triggers_only_baseline']} only the baseline; corner cases fixed "
              f"{ab['corner_cases']['fixed']}/{ab['corner_cases']['clips']}")
    if "sweep" in report:
        print(f"  sweep: {report['sweep']['verdict']}: {report['sweep']['best']}")
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    return EXIT_SOME_INPUTS_FAILED if tot["inputs_failed"] else 0
