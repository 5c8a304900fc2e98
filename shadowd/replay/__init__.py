"""Replay harness: recorded drives and uploaded clips through a candidate model on a desktop.

Owns the desktop side of the loop: reading inputs (``inputs``), driving the shared
``shadowd.session.Session`` over them with a simulated clock (``runner``), spreading inputs over
processes or a Ray cluster (``parallel``), comparing two models (``ab``), scoring triggers
against labelled events and sweeping their thresholds (``labels``), and writing the report
(``report``). Rules: replay never re-implements a pipeline stage; everything it knows about the
drive comes from the same Session the daemon runs. Outputs are deterministic: sorted, no
wall-clock values outside ``timing.json``.
"""
