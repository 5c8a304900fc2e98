"""Every trigger decision is made here: definitions, built-in rules, and when a trigger fires.

Rules of this file:
1. Pure: stdlib, numpy, shadowd.errors and shadowd.core only. Time arrives as ``t_ns``
   (monotonic nanoseconds) with each tick; this file never reads a clock or a file.
2. Definitions are plain dicts as they arrive in a fleet config. ``compile_triggers`` validates
   every field (unknown keys refused by name) and compiles every expression once; a bad one is
   refused at config load with its column (shadowd.core.expr). Nothing is ever ``eval``-ed.
3. Firing: a trigger fires on the rising edge of its condition (known true now, not true at the
   previous tick), unless it fired less than ``cooldown_s`` ago (counted as
   ``suppressed_cooldown``) or already ``max_per_hour`` times in the last rolling hour
   (``suppressed_rate``). Suppressed edges do not restart the cooldown. ``_Gate`` is the only
   place these rules live; both evaluation paths go through it.
4. ``TriggerEngine.evaluate`` (one tick) and ``evaluate_batch`` (a chunk, numpy) return the
   same events for the same ticks, whatever the chunk boundaries, and may be mixed. Where the
   native build has it, an engine runs every tick on the C evaluator (``native``; its state
   and each condition's previous value live in C), which also reads the values from frames in
   place (``evaluate_held``: ShadowCore's path); ``_Gate`` still decides what fires.
5. Built-in rules are data in the same language (``BUILTINS``); docs/triggers.md explains each
   threshold. Keep the two in sync.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import ConfigError
from .expr import BOOL, FUNCTIONS, KEYWORDS, PROGRAM_OPS, Chunk, Expression, compile_expression, program
from .signals import SIGNALS
from .types import TriggerFired

DEFAULT_METRICS = ("divergence", "steer_err_deg", "accel_err_mps2", "ade_m", "fde_m",
                   "steer_err_norm", "accel_err_norm", "traj_err_norm")
"""Divergence metric names a trigger may read besides canonical signals. ``divergence`` is the
combined score (docs/divergence.md; keep in sync with its metric table); it is also the
``score`` of a trigger that reads it."""

SCORE_NAME = "divergence"

PRIORITY_MIN, PRIORITY_MAX = 0, 9
MAX_PRE_S = 120.0
MAX_POST_S = 120.0
MAX_COOLDOWN_S = 86_400.0
MAX_PER_HOUR = 3_600
MAX_TRIGGERS = 64
HOUR_NS = 3_600 * 1_000_000_000

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")  # same rule as core/config.py

_DEFAULTS: dict[str, Any] = {
    "priority": 5, "pre_s": 10.0, "post_s": 5.0, "cooldown_s": 30.0, "max_per_hour": 30,
    "description": "", "enabled": True,
}
_KEYS = ("name", "expr", "priority", "pre_s", "post_s", "cooldown_s", "max_per_hour",
         "description", "enabled", "builtin")


# --------------------------------------------------------------------------- built-in rules

BUILTINS: dict[str, dict[str, Any]] = {
    "hard_brake": {
        "expr": "held(accel_long_mps2 < -4.0, 0.2s)",
        "priority": 8, "pre_s": 10.0, "post_s": 5.0, "cooldown_s": 10.0, "max_per_hour": 30,
        "description": "deceleration beyond 4 m/s^2 (~0.4 g) for 0.2 s: emergency braking",
    },
    "swerve": {
        "expr": "speed_mps > 8 and (abs(steer_rate_dps) > 180 or held(abs(accel_lat_mps2) > 4.0, 0.2s))",
        "priority": 8, "pre_s": 10.0, "post_s": 5.0, "cooldown_s": 10.0, "max_per_hour": 30,
        "description": "above 29 km/h, a steering-wheel rate over 180 deg/s or lateral "
                       "acceleration over 4 m/s^2 for 0.2 s: an evasive manoeuvre",
    },
    "takeover": {
        "expr": "rising(driver_override) or "
                "(falling(adas_engaged) and max_over(abs(steer_torque_driver_nm), 0.5s) > 1.5)",
        "priority": 9, "pre_s": 15.0, "post_s": 5.0, "cooldown_s": 5.0, "max_per_hour": 60,
        "description": "the driver overrides the ADAS, or it disengages while the driver "
                       "steers with more than 1.5 N*m: the human disagreed with the automation",
    },
    "disengagement": {
        "expr": "falling(adas_engaged)",
        "priority": 7, "pre_s": 15.0, "post_s": 5.0, "cooldown_s": 5.0, "max_per_hour": 60,
        "description": "any ADAS disengagement (engaged -> not engaged, both known)",
    },
    "divergence": {
        "expr": "mean_over(divergence, 1s) > 0.6 or held(divergence > 1.0, 0.5s)",
        "priority": 6, "pre_s": 10.0, "post_s": 5.0, "cooldown_s": 20.0, "max_per_hour": 30,
        "description": "the candidate model disagrees with the human in a sustained way: its "
                       "divergence score averaged over 1 s above 0.6 of its tolerance, or above "
                       "the tolerance (1.0) for 0.5 s; single-prediction spikes are noise",
    },
    "baseline": {
        "expr": "periodic(600s) and speed_mps > 1.0",
        "priority": 0, "pre_s": 10.0, "post_s": 10.0, "cooldown_s": 0.0, "max_per_hour": 6,
        "description": "a 20 s sample of ordinary driving every 10 minutes, for base rates",
    },
}
"""Built-in rule triggers by name. Reference one from a config with {"builtin": "<name>"} plus
any field to override, e.g. {"builtin": "hard_brake", "post_s": 8}."""


def builtin_triggers() -> list[dict]:
    """Every built-in trigger as a complete definition dict (a fresh copy each call)."""
    return [{"name": name, **_DEFAULTS, **spec} for name, spec in BUILTINS.items()]


# --------------------------------------------------------------------------- definitions

@dataclass(frozen=True, slots=True)
class TriggerDef:
    """One validated trigger definition. ``to_dict()`` gives back a config-ready dict."""

    name: str
    expr: str
    priority: int
    pre_s: float
    post_s: float
    cooldown_s: float
    max_per_hour: int
    description: str = ""
    enabled: bool = True
    builtin: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["builtin"] is None:
            del d["builtin"]
        return d


def _where(index: int, name: str | None) -> str:
    return f'trigger "{name}"' if name else f"triggers[{index}]"


def _number(raw: Any, where: str, key: str, lo: float, hi: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise ConfigError(f"{where}: {key} must be a number of seconds, got {raw!r:.60}; "
                          f"write e.g. {key}: 5")
    if not lo <= raw <= hi:
        raise ConfigError(f"{where}: {key} = {raw!r} is out of range; use {lo:g} to {hi:g}")
    return float(raw)


def _integer(raw: Any, where: str, key: str, lo: int, hi: int) -> int:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(f"{where}: {key} must be a whole number, got {raw!r:.60}")
    if not lo <= raw <= hi:
        raise ConfigError(f"{where}: {key} = {raw!r} is out of range; use {lo} to {hi}")
    return raw


def parse_trigger(raw: Any, index: int = 0) -> TriggerDef:
    """Validate one definition dict (a builtin reference is expanded first).

    Raises:
        ConfigError: naming the trigger (or its index) and the field, with the offending value.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"triggers[{index}]: expected an object with name and expr, got {raw!r:.80}")
    name = raw.get("name")
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise ConfigError(f"{_where(index, name if isinstance(name, str) else None)}: unknown key "
                          f"{unknown[0]!r}; allowed keys are {', '.join(_KEYS)}")
    fields = dict(_DEFAULTS)
    builtin = raw.get("builtin")
    if builtin is not None:
        if not isinstance(builtin, str) or builtin not in BUILTINS:
            import difflib

            close = difflib.get_close_matches(str(builtin), list(BUILTINS), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise ConfigError(f"triggers[{index}]: unknown builtin {builtin!r}{hint}; built-in "
                              f"triggers are {', '.join(BUILTINS)}")
        fields.update(BUILTINS[builtin])
        fields["name"] = builtin
    fields.update({k: v for k, v in raw.items() if k != "builtin"})
    name = fields.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"triggers[{index}]: name must be 1-128 letters, digits or . _ : - "
                          f"starting with a letter or digit, got {name!r:.60}")
    where = _where(index, name)
    if "expr" not in fields:
        raise ConfigError(f"{where}: expr is missing; give a condition such as "
                          f'"held(accel_long_mps2 < -4, 0.2s)" or reference a builtin')
    description = fields["description"]
    if not isinstance(description, str) or len(description) > 500:
        raise ConfigError(f"{where}: description must be text of at most 500 characters, got {description!r:.60}")
    enabled = fields["enabled"]
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: enabled must be true or false, got {enabled!r:.60}")
    return TriggerDef(
        name=name,
        expr=fields["expr"],
        priority=_integer(fields["priority"], where, "priority", PRIORITY_MIN, PRIORITY_MAX),
        pre_s=_number(fields["pre_s"], where, "pre_s", 0.0, MAX_PRE_S),
        post_s=_number(fields["post_s"], where, "post_s", 0.0, MAX_POST_S),
        cooldown_s=_number(fields["cooldown_s"], where, "cooldown_s", 0.0, MAX_COOLDOWN_S),
        max_per_hour=_integer(fields["max_per_hour"], where, "max_per_hour", 1, MAX_PER_HOUR),
        description=description,
        enabled=enabled,
        builtin=builtin,
    )


class TriggerSet:
    """Validated, compiled trigger definitions: immutable, shared by any number of engines.

    Attributes:
        definitions: every definition, enabled or not, in config order.
        expressions: name -> compiled Expression (enabled triggers only).
        max_pre_s / max_post_s: longest pre/post window among enabled triggers (0 if none), for
            checking the ring's history against the clip windows.
        history_s: longest window an expression keeps in its own state.
        signals_used: canonical signals the enabled triggers read.
        metrics_used: divergence metrics the enabled triggers read.
    """

    def __init__(self, definitions: tuple[TriggerDef, ...], expressions: dict[str, Expression]):
        self.definitions = definitions
        self.expressions = expressions
        enabled = [d for d in definitions if d.enabled]
        self.enabled = tuple(enabled)
        self.max_pre_s = max((d.pre_s for d in enabled), default=0.0)
        self.max_post_s = max((d.post_s for d in enabled), default=0.0)
        self.history_s = max((e.history_s for e in expressions.values()), default=0.0)
        self.signals_used = frozenset().union(*(e.signals for e in expressions.values()))
        self.metrics_used = frozenset().union(*(e.metrics for e in expressions.values()))

    def __len__(self) -> int:
        return len(self.definitions)

    def __repr__(self) -> str:
        return f"TriggerSet({', '.join(d.name for d in self.enabled)})"

    def to_dicts(self) -> list[dict]:
        return [d.to_dict() for d in self.definitions]


def compile_triggers(defs: Iterable[Any], *, metric_names: Iterable[str] = DEFAULT_METRICS) -> TriggerSet:
    """Validate trigger definitions (dicts as in a config) and compile their expressions.

    Args:
        defs: a list of dicts with ``name``, ``expr``, ``priority`` (0..9, higher first),
            ``pre_s``, ``post_s``, ``cooldown_s``, ``max_per_hour``, optional ``description``,
            ``enabled``; or ``{"builtin": "<name>", ...overrides}``. Omitted fields take the
            defaults in docs/triggers.md.
        metric_names: divergence metrics expressions may read besides canonical signals.

    Raises:
        ConfigError: the first invalid definition, naming the trigger, the field and for
            expressions the column with a caret line.
    """
    if isinstance(defs, (str, bytes, Mapping)) or not isinstance(defs, Iterable):
        raise ConfigError(f"triggers: expected a list of trigger objects, got {defs!r:.80}")
    defs = list(defs)
    if len(defs) > MAX_TRIGGERS:
        raise ConfigError(f"triggers: {len(defs)} triggers, the limit is {MAX_TRIGGERS}; merge some")
    metrics = tuple(metric_names)
    for m in metrics:
        if not isinstance(m, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", m) or \
                m in SIGNALS or m in FUNCTIONS or m in KEYWORDS:
            raise ConfigError(f"metric name {m!r} is not usable in trigger expressions; metric names "
                              "are identifiers that are not signals, functions or keywords")
    parsed: list[TriggerDef] = []
    expressions: dict[str, Expression] = {}
    seen: set[str] = set()
    for i, raw in enumerate(defs):
        d = parse_trigger(raw, i)
        if d.name in seen:
            raise ConfigError(f"triggers[{i}]: duplicate trigger name {d.name!r}; names must be unique")
        seen.add(d.name)
        expr = compile_expression(d.expr, metric_names=metrics, trigger=d.name)
        if expr.type != BOOL:
            raise ConfigError(f'trigger "{d.name}": expr must be a condition (true/false), but '
                              f'"{d.expr}" is a number; compare it, e.g. "{d.expr} > 1"')
        parsed.append(d)
        if d.enabled:
            expressions[d.name] = expr
    return TriggerSet(tuple(parsed), expressions)


# --------------------------------------------------------------------------- engine

class _Gate:
    """Rising edge + cooldown + rolling-hour rate cap for one trigger (rule 3 above)."""

    __slots__ = ("cooldown_ns", "cap", "last_fire", "fires", "was_on", "fired",
                 "suppressed_cooldown", "suppressed_rate")

    def __init__(self, d: TriggerDef):
        self.cooldown_ns = round(d.cooldown_s * 1e9)
        self.cap = d.max_per_hour
        self.last_fire: int | None = None
        self.fires: deque = deque()  # times of fires in the last hour
        self.was_on = False
        self.fired = 0
        self.suppressed_cooldown = 0
        self.suppressed_rate = 0

    def admit(self, t: int) -> bool:
        """An edge at ``t``: True if it fires, else counts why not."""
        if self.last_fire is not None and t - self.last_fire < self.cooldown_ns:
            self.suppressed_cooldown += 1
            return False
        fires = self.fires
        while fires and fires[0] <= t - HOUR_NS:
            fires.popleft()
        if len(fires) >= self.cap:
            self.suppressed_rate += 1
            return False
        fires.append(t)
        self.last_fire = t
        self.fired += 1
        return True


class TriggerEngine:
    """Evaluates a TriggerSet tick by tick and says which triggers fire.

    Cheap to build (no parsing; state starts empty), so rebuild it rather than reuse one after
    a config swap. Not thread-safe: one engine per consumer thread.
    """

    def __init__(self, trigger_set: TriggerSet, *, native: bool | None = None):
        self.trigger_set = trigger_set
        self._defs = trigger_set.enabled
        self._evals = [trigger_set.expressions[d.name].evaluator() for d in self._defs]
        self._gates = [_Gate(d) for d in self._defs]
        self._names = [trigger_set.expressions[d.name].names for d in self._defs]
        # (index, compiled one-tick evaluator, gate) per trigger: what evaluate touches per tick
        self._scalar_gates = tuple((k, ev.scalar, gate)
                                   for k, (ev, gate) in enumerate(zip(self._evals, self._gates)))
        self._scored = [SCORE_NAME in trigger_set.expressions[d.name].metrics for d in self._defs]
        self._last_t: int | None = None
        self.ticks = 0
        self.dropped_out_of_order = 0
        # the C evaluator (native/src/trig.c) when built: then every tick goes through it
        self.native = _NativeProgram.build(trigger_set, self._defs) if native is not False else None
        if native and self.native is None:
            raise RuntimeError("the C trigger evaluator is not built; run scripts/setup")

    # one tick ---------------------------------------------------------------
    def evaluate(self, t_ns: int, values: Mapping[str, float]) -> list[TriggerFired]:
        """Evaluate one tick; return the triggers that fire at it, in definition order.

        ``values`` holds canonical signals sampled at the tick and the latest divergence
        metrics; a missing name or NaN is unknown. A tick older than the previous one is
        dropped and counted in ``stats()["dropped_out_of_order"]``.
        """
        t = int(t_ns)
        last_t = self._last_t
        if last_t is not None and t < last_t:
            self.dropped_out_of_order += 1
            return []
        self._last_t = t
        self.ticks += 1
        if self.native is not None:
            return self._edges(self.native.run_values([t], [[_value(values.get(n)) for n in self.native.names]]), [t])
        out: list[TriggerFired] = []
        for k, scalar, gate in self._scalar_gates:
            on = scalar(t, values) == 1.0
            if on is not gate.was_on:
                gate.was_on = on
                if on and gate.admit(t):
                    out.append(self._event(k, t, values))
        return out

    def _event(self, k: int, t: int, values: Mapping[str, Any]) -> TriggerFired:
        causes: dict[str, float] = {}
        for name in self._names[k]:
            x = values.get(name)
            try:
                x = float(x)
            except (TypeError, ValueError, OverflowError):
                continue
            if x - x == 0.0:  # finite: NaN and +-inf are unknown, as in the expression
                causes[name] = x
        return self._fired(k, t, causes)

    def _fired(self, k: int, t: int, causes: dict[str, float]) -> TriggerFired:
        d = self._defs[k]
        score = causes.get(SCORE_NAME, 1.0) if self._scored[k] else 1.0
        return TriggerFired(t_ns=t, trigger=d.name, priority=d.priority, score=score,
                            pre_s=d.pre_s, post_s=d.post_s, causes=causes)

    # a chunk ----------------------------------------------------------------
    def evaluate_batch(self, t_ns: np.ndarray, columns: Mapping[str, np.ndarray]) -> list[TriggerFired]:
        """Evaluate a chunk of ticks at once (numpy); same events as ``evaluate`` per tick.

        Args:
            t_ns: int64 tick times, one per tick.
            columns: name -> array with one value per tick (NaN or +-inf = unknown); names
                without a column, and columns numpy cannot convert to float64 as a whole
                (strings, huge ints), are unknown throughout.

        Returns:
            The fired events in time order, then definition order within a tick.

        Raises:
            ValueError: a column's length differs from ``len(t_ns)``.
        """
        t = np.asarray(t_ns, dtype=np.int64).reshape(-1)
        if len(t) == 0:
            return []
        floor = np.maximum.accumulate(np.concatenate(([t[0] if self._last_t is None else self._last_t], t)))
        keep = t >= floor[:-1]
        if not keep.all():
            self.dropped_out_of_order += int((~keep).sum())
            t = t[keep]
            columns = {k: np.asarray(v)[keep] if len(np.asarray(v)) == len(keep) else v
                       for k, v in columns.items()}
            if len(t) == 0:
                return []
        self._last_t = int(t[-1])
        self.ticks += len(t)
        chunk = Chunk(t, columns)
        if self.native is not None:
            return self._edges(self.native.run_values(t, self.native.matrix(chunk)), t)
        gates = self._gates
        # on[i, k]: trigger k's condition is true at tick i; one row per tick so that the
        # rising edges come out of nonzero in time order, then definition order.
        on = np.empty((len(t), len(gates)), dtype=bool)
        for k, ev in enumerate(self._evals):
            np.equal(ev.batch_chunk(chunk), 1.0, out=on[:, k])
        before = np.empty_like(on)
        before[0] = [gate.was_on for gate in gates]
        before[1:] = on[:-1]
        ticks, triggers = np.nonzero(on & ~before)
        found = [(i, k) for i, k in zip(ticks.tolist(), triggers.tolist()) if gates[k].admit(int(t[i]))]
        for gate, was_on in zip(gates, on[-1].tolist()):
            gate.was_on = was_on
        out = []
        for i, k in found:
            causes = {}
            for name in self._names[k]:
                x = float(chunk.column(name)[i])
                if x == x:
                    causes[name] = x
            out.append(self._fired(k, int(t[i]), causes))
        return out

    # from frames (the C evaluator) ---------------------------------------------
    def evaluate_held(self, t_ns: list[int] | np.ndarray, sources: "HoldSources") -> list[TriggerFired]:
        """Evaluate ticks whose values are the zero-order holds of ``sources`` (frames in
        place: no value per tick passes through Python); the same events as ``evaluate`` with
        those values. Needs the C evaluator (``native``)."""
        n = len(t_ns)
        if n == 0:
            return []
        first, newest = int(t_ns[0]), int(t_ns[-1])
        if self._last_t is not None and first < self._last_t:  # never from ShadowCore: ticks ascend
            t = np.asarray(t_ns, np.int64)
            t = t[t >= np.maximum.accumulate(np.concatenate(([self._last_t], t[:-1])))]
            self.dropped_out_of_order += n - len(t)
            return self.evaluate_held(t, sources) if len(t) else []
        self._last_t = newest
        self.ticks += n
        return self._edges(self.native.run_held(t_ns, sources), t_ns)

    def hold_sources(self, specs: list[tuple[np.dtype, list[tuple[str, str]]]]) -> "HoldSources | None":
        """Sources for ``evaluate_held``: per source, the frames' dtype and (field, value
        name) pairs. None when the C evaluator is not built or a field type is one it does not read."""
        return HoldSources.build(self.native, specs) if self.native is not None else None

    def _edges(self, edges: list[tuple[int, int, list[float]]], t_ns) -> list[TriggerFired]:
        """Events of the C evaluator's rising edges (tick index, trigger, the tick's values):
        through each trigger's gate, in time order then definition order."""
        out = []
        names = self.native.names if edges else ()
        for i, k, row in edges:
            t = int(t_ns[i])
            if self._gates[k].admit(t):
                values = dict(zip(names, row))
                causes = {}
                for name in self._names[k]:
                    x = values[name]
                    if x - x == 0.0:  # finite
                        causes[name] = x
                out.append(self._fired(k, t, causes))
        return out

    # counters ---------------------------------------------------------------
    def stats(self) -> dict:
        """Counters since the engine was built:
        ``{"ticks", "dropped_out_of_order", "triggers": {name: {"fired", "suppressed_cooldown",
        "suppressed_rate"}}}``."""
        return {
            "ticks": self.ticks,
            "dropped_out_of_order": self.dropped_out_of_order,
            "triggers": {d.name: {"fired": g.fired, "suppressed_cooldown": g.suppressed_cooldown,
                                  "suppressed_rate": g.suppressed_rate}
                         for d, g in zip(self._defs, self._gates)},
        }


# --------------------------------------------------------------------------- the C evaluator

def _value(x: Any) -> float:
    """A tick value as ``evaluate`` reads it: a float, NaN when float() refuses it."""
    if x.__class__ is float:
        return x
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        return math.nan


_NATIVE_TRIG_ABI = 1


def native_available() -> bool:
    """Whether this build has the C trigger evaluator (an engine then uses it by default)."""
    from ..native import kernel  # lazily: core stays importable and pure without a build

    return kernel("shadowd_trig_abi_version", _NATIVE_TRIG_ABI, "trigger evaluator") is not None
_EDGES_PER_CALL = 64  # edge slots per trigger handed to one C call (a call stops early when full)


class _NativeProgram:
    """A TriggerSet's enabled expressions as one program of the C evaluator
    (native/src/trig.c): its state (windows, edges of each condition) lives in C."""

    def __init__(self, ffi: Any, lib: Any, names: tuple[str, ...], ops: list[tuple], roots: list[int]):
        self.ffi, self.lib, self.names = ffi, lib, names
        c_ops = ffi.new("struct shadowd_trig_op[]", max(1, len(ops)))
        for i, (code, a, b, name, param_ns, value) in enumerate(ops):
            o = c_ops[i]
            o.op, o.a, o.b, o.name, o.param_ns, o.value = code, a, b, name, param_ns, value
        handle = lib.shadowd_trig_new(c_ops, len(ops), ffi.new("int32_t[]", roots), len(roots), len(names))
        if handle == ffi.NULL:
            raise MemoryError("shadowd_trig_new refused the trigger program")  # compiled here: a bug
        self._handle = ffi.gc(handle, lib.shadowd_trig_free)
        self._n_roots = len(roots)
        self._max_edges = max(1, len(roots)) * _EDGES_PER_CALL
        self._edges = ffi.new("struct shadowd_trig_edge[]", self._max_edges)
        self._edge_values = ffi.new("double[]", max(1, self._max_edges * len(names)))
        self._done = ffi.new("size_t *")
        self._ticks = ffi.new("int64_t[]", 8)  # a service wake-up's ticks, without an allocation

    @classmethod
    def build(cls, trigger_set: "TriggerSet", defs) -> "_NativeProgram | None":
        return cls.of([trigger_set.expressions[d.name] for d in defs])

    @classmethod
    def of(cls, exprs: list[Expression]) -> "_NativeProgram | None":
        """One program of ``exprs`` (each a root), or None when the C evaluator is not built."""
        from ..native import kernel  # lazily: core stays importable and pure without a build

        native = kernel("shadowd_trig_abi_version", _NATIVE_TRIG_ABI, "trigger evaluator")
        if native is None:
            return None
        ffi, lib = native
        if tuple(getattr(lib, f"SHADOWD_TRIG_{n}") for n in ("CONST", "HELD", "PERIODIC")) != (
                PROGRAM_OPS.index("const"), PROGRAM_OPS.index("held"), PROGRAM_OPS.index("periodic")):
            raise RuntimeError("native/include/shadowd/trig.h and shadowd.core.expr.PROGRAM_OPS disagree")
        names = tuple(sorted({n for e in exprs for n in e.names}))
        index = {n: i for i, n in enumerate(names)}
        ops: list[tuple] = []
        roots = [program(e.root, index, ops) for e in exprs]
        return cls(ffi, lib, names, ops, roots)

    def matrix(self, chunk: Chunk) -> np.ndarray:
        """A chunk's values as ``run_values`` takes them: one row per tick, one column per name
        (``Chunk.column``'s float64: NaN where unknown or missing)."""
        values = np.empty((chunk.n, len(self.names)))
        for j, name in enumerate(self.names):
            values[:, j] = chunk.column(name)
        return values

    def run_values(self, t_ns, values, roots: np.ndarray | None = None) -> list[tuple[int, int, list[float]]]:
        """Ticks with their values given (rows of ``len(names)`` floats): the rising edges.
        ``roots``: gets every root's value per tick (float64, (ticks, roots))."""
        ffi = self.ffi
        t = np.ascontiguousarray(t_ns, np.int64)
        v = np.ascontiguousarray(values, np.float64)
        out = ffi.NULL if roots is None else ffi.from_buffer("double[]", roots)
        return self._run(len(t), ffi.from_buffer("int64_t[]", t), ffi.from_buffer("double[]", v), len(self.names),
                         ffi.NULL, 0, out)

    def run_held(self, t_ns, sources: "HoldSources") -> list[tuple[int, int, list[float]]]:
        """Ticks whose values are ``sources``' zero-order holds: the rising edges."""
        n = len(t_ns)
        if n <= 8 and isinstance(t_ns, list):
            ticks = self._ticks
            for i, t in enumerate(t_ns):
                ticks[i] = t
        else:
            ticks = self.ffi.from_buffer("int64_t[]", np.ascontiguousarray(t_ns, np.int64))
        return self._run(n, ticks, self.ffi.NULL, 0, sources.structs, sources.count, self.ffi.NULL)

    def _run(self, n, ticks, values, stride, sources, n_sources, roots) -> list[tuple[int, int, list[float]]]:
        lib, ffi, done = self.lib, self.ffi, self._done
        out = []
        start = 0
        nv = len(self.names)
        while True:
            rc = lib.shadowd_trig_run(self._handle, n - start, ticks + start,
                                      values if values == ffi.NULL else values + start * stride,
                                      n_sources, sources, self._edges, self._edge_values, self._max_edges,
                                      roots if roots == ffi.NULL else roots + start * self._n_roots, done)
            if rc < 0:
                if rc == -12:  # ENOMEM
                    raise MemoryError("the trigger evaluator could not grow a window")
                raise RuntimeError(f"shadowd_trig_run failed ({rc})")  # arguments checked here: a bug
            for e in range(rc):
                edge = self._edges[e]
                out.append((start + edge.tick, edge.root,
                            ffi.unpack(self._edge_values + e * nv, nv) if nv else []))
            start += done[0]
            if start >= n:
                return out


class NativeEvaluator:
    """One expression on the C evaluator, with ``Evaluator``'s interface (``scalar`` one tick,
    ``batch`` a chunk, in any mix): the reference tests and benches compare it with."""

    def __init__(self, expression: Expression):
        self.expression = expression
        native = _NativeProgram.of([expression])
        if native is None:
            raise RuntimeError("the C trigger evaluator is not built; run scripts/setup")
        self._native = native

    def scalar(self, t_ns: int, values: Mapping[str, float]) -> float:
        out = np.empty((1, 1))
        self._native.run_values([t_ns], [[_value(values.get(n)) for n in self._native.names]], out)
        return float(out[0, 0])

    def batch(self, t_ns: np.ndarray, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        chunk = Chunk(np.asarray(t_ns, np.int64), columns)
        out = np.empty((chunk.n, 1))
        self._native.run_values(chunk.t, self._native.matrix(chunk), out)
        return out[:, 0]


class HoldSources:
    """Where the C evaluator reads a tick's values: frames of a few buffers (a topic's, the
    trigger metrics'), each field going to one of the program's values. ``set(i, n, t_ptr,
    frames_ptr)`` points source ``i`` at its buffer's current frames before each call."""

    def __init__(self, ffi: Any, specs: list[tuple[int, list[int], list[int], list[int]]]):
        self.count = len(specs)
        self.structs = self._c = ffi.new("struct shadowd_trig_source[]", max(1, len(specs)))
        self._pointed: list[Any] = [None] * len(specs)  # the times and frames each source points to
        self._frames: list[Any] = [None] * len(specs)
        self._keep = []  # the field arrays the structs point to
        for i, (stride, offsets, types, value_index) in enumerate(specs):
            s = self._c[i]
            arrays = (ffi.new("size_t[]", offsets), ffi.new("int[]", types), ffi.new("size_t[]", value_index))
            self._keep.append(arrays)
            s.n, s.t_ns, s.frames, s.frame_stride = 0, ffi.NULL, ffi.NULL, stride
            s.n_fields, s.field_offset, s.field_type, s.value_index = len(offsets), *arrays

    @classmethod
    def build(cls, native: _NativeProgram, specs) -> "HoldSources | None":
        from ..native import FIELD_TYPES

        index = {n: i for i, n in enumerate(native.names)}
        out = []
        for dtype, fields in specs:
            offsets, types, value_index = [], [], []
            for field, name in fields:
                if name not in index:
                    continue  # a value no trigger reads
                ftype, offset = dtype.fields[field][0], dtype.fields[field][1]
                code = FIELD_TYPES.get(ftype.str)
                if code is None or ftype.shape:
                    return None
                offsets.append(offset)
                types.append(code)
                value_index.append(index[name])
            out.append((dtype.itemsize, offsets, types, value_index))
        return cls(native.ffi, out)

    def set(self, i: int, n: int, t_ptr: Any, frames_ptr: Any) -> None:
        s = self._c[i]
        s.n = n
        if t_ptr is not self._pointed[i]:  # the arrays moved: point again (and keep them alive)
            s.t_ns, s.frames = t_ptr, frames_ptr
            self._pointed[i] = t_ptr
            self._frames[i] = frames_ptr
