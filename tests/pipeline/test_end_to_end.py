"""The real RAV4 minute through ingest -> reference model -> scorer -> triggers; profile parity;
the bundled reference model is what its script builds."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from shadowd.core.divergence import METRIC_NAMES
from shadowd.core.pipeline import InferenceRequest, ShadowCore
from shadowd.core.triggers import builtin_triggers, compile_triggers
from shadowd.core.types import DivergenceBatch, TriggerFired
from shadowd.edges.can_ingest import decode_raw_log
from shadowd.edges.model_runner import ModelRunner, default_model_path
from shadowd.edges.platforms import load_platform

from .conftest import DATA

ROOT = DATA.parents[1]
# openpilot's steering request drops for 10-60 ms four times in this minute (11.9 s, 29.0 s,
# 34.7 s, 38.5 s); an engagement is a rise after the ADAS was mostly off for the last 2 s.
ENGAGEMENT = {"name": "engagement", "expr": "rising(adas_steering) and mean_over(adas_steering, 2s) < 0.5",
              "priority": 4, "cooldown_s": 5.0}
DROPOUT = {"name": "adas_dropout", "expr": "falling(adas_steering)", "priority": 3, "cooldown_s": 0.0}


def _run(topics, runner, triggers):
    core = ShadowCore(runner.contract, triggers)
    for name in ("vehicle", "perception"):
        core.push_frames(name, topics[name])
    end = int(topics["vehicle"]["t_ns"][-1])
    events = []
    for _ in range(100):
        out = core.advance(end)
        reqs = [e for e in out if isinstance(e, InferenceRequest)]
        events += [e for e in out if not isinstance(e, InferenceRequest)]
        if not reqs:
            break
        for r in reqs:
            core.submit(r, runner.infer(r))
    return core, events


def _divergences(events):
    """The Divergence rows of the DivergenceBatch events, in order."""
    return [d for e in events if isinstance(e, DivergenceBatch) for d in e.rows()]


@pytest.fixture(scope="module")
def rav4_run(rav4_topics):
    runner = ModelRunner(default_model_path(), load_platform("nt2"), providers=["CPUExecutionProvider"])
    triggers = compile_triggers([*builtin_triggers(), ENGAGEMENT, DROPOUT], metric_names=METRIC_NAMES)
    core, events = _run(rav4_topics[0], runner, triggers)
    return rav4_topics[0], core, events


def _secs(topics, t_ns):
    return (t_ns - int(topics["vehicle"]["t_ns"][0])) / 1e9


def test_every_due_prediction_is_scored(rav4_run):
    _, core, events = rav4_run
    s = core.stats()
    assert s["requests"] > 1100 and s["predictions"] == s["requests"]
    assert s["divergences"] == s["requests"] - s["predictions_unscored"]
    assert s["predictions_late"] == 0 and s["windows_incomplete"] == 0


def test_divergence_is_low_while_the_human_drives(rav4_run):
    topics, _, events = rav4_run
    divs = _divergences(events)
    human = [d.score for d in divs if 1.0 < _secs(topics, d.t_ns) < 8.0]
    assert len(human) > 100
    assert np.median(human) < 0.3 and np.percentile(human, 95) < 0.6


def test_divergence_peaks_at_the_handover_to_openpilot(rav4_run):
    topics, _, events = rav4_run
    divs = _divergences(events)
    worst = max(divs, key=lambda d: d.score)
    assert 8.5 < _secs(topics, worst.t_ns) < 11.0
    assert worst.score > 1.0


def test_handover_fires_engagement_and_nothing_fires_that_did_not_happen(rav4_run):
    topics, _, events = rav4_run
    fired = [e for e in events if isinstance(e, TriggerFired)]
    names = [e.trigger for e in fired]
    assert names.count("engagement") == 1
    assert 8.5 < _secs(topics, next(e.t_ns for e in fired if e.trigger == "engagement")) < 9.5
    drops = [round(_secs(topics, e.t_ns)) for e in fired if e.trigger == "adas_dropout"]
    assert drops == [29, 35, 38]  # the 10 ms drop at 11.9 s falls between two 50 Hz ticks
    for absent in ("hard_brake", "swerve", "takeover", "disengagement"):
        assert absent not in names  # no braking, no evasive move, no override in this minute


def test_profiles_sharing_a_dbc_give_identical_outputs(rav4_raw):
    outputs = {}
    for name in ("nt2", "nt3", "desktop"):
        platform = load_platform(name)
        topics, _ = decode_raw_log(rav4_raw, platform)
        runner = ModelRunner(default_model_path(), platform, providers=["CPUExecutionProvider"])
        core, events = _run(topics, runner, compile_triggers([*builtin_triggers(), ENGAGEMENT], metric_names=METRIC_NAMES))
        outputs[name] = (topics["vehicle"].tobytes(), topics["perception"].tobytes(),
                         [(d.t_ns, d.score) for d in _divergences(events)],
                         [(e.t_ns, e.trigger) for e in events if isinstance(e, TriggerFired)])
    assert outputs["nt2"] == outputs["nt3"] == outputs["desktop"]


def test_bundled_reference_model_is_what_the_script_builds():
    spec = importlib.util.spec_from_file_location("build_reference_model", ROOT / "scripts" / "build_reference_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    blob, provenance = mod.build()
    assert blob == default_model_path().read_bytes()
    assert provenance["sha256"] == ModelRunner(default_model_path(), None).sha256
    assert len(blob) < 64 * 1024
