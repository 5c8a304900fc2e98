"""Bad expressions are refused with ConfigError naming the trigger and the column, with a
caret line under the offending span; limits hold; no input crashes the parser."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowd.core.expr import MAX_DEPTH, MAX_NODES, MAX_SOURCE_CHARS, compile_expression
from shadowd.core.triggers import DEFAULT_METRICS
from shadowd.errors import ConfigError


def error_of(src: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        compile_expression(src, metric_names=DEFAULT_METRICS, trigger="hb")
    return info.value


@pytest.mark.parametrize("src, column, fragment", [
    ("sped_mps > 3", 1, 'unknown name "sped_mps" (did you mean "speed_mps"?)'),
    ("speed_mps > 3 and divergance > 1", 19, 'did you mean "divergence"?'),
    ("speed_mps and 3", 1, "needs a condition"),
    ("speed_mps > 3 and 3", 19, "needs a condition"),
    ("brake_pressed == 1", 1, "brake_pressed is a flag"),
    ("brake_pressed + 1 > 0", 1, "brake_pressed is a flag"),
    ("not speed_mps", 5, "needs a condition"),
    ("-brake_pressed", 2, "needs a number"),
    ("max_over(speed_mps, 2) > 1", 21, "write 2s or 2ms"),
    ("max_over(speed_mps, 61s) > 1", 21, "out of range"),
    ("held(speed_mps, 1s)", 6, "needs a condition"),
    ("periodic(0.5s)", 10, "out of range"),
    ("speed_mps > 2s", 13, "only allowed as the window"),
    ("maxover(speed_mps, 1s) > 1", 1, 'did you mean "max_over"?'),
    ("abs > 1", 1, "abs is a function"),
    ("abs(speed_mps, 2) > 1", 16, "abs takes 1 argument"),
    ("min(speed_mps) > 1", 1, "min takes 2 argument"),
    ("speed_mps > 3 && brake_pressed", 15, 'write "and"'),
    ("speed_mps = 3", 11, 'write "=="'),
    ("!brake_pressed", 1, 'write "not"'),
    ("(speed_mps > 3", 15, 'expected ")" to close the "(" at column 1'),
    ("speed_mps > 3)", 14, "unexpected \")\""),
    ("speed_mps > ", 13, "expected a value, found the end"),
    ("1 < speed_mps < 3", 15, "chained comparisons"),
    ("speed_mps > 3 speed_mps", 15, "after a complete expression"),
    ("speed_mps > 3x", 14, 'unexpected "x" after the number 3'),
    ("speed_mps > 3 and # comment", 19, "unexpected character '#'"),
    ("", 1, "expression is empty"),
    ("and speed_mps", 1, '"and" needs an operand'),
    ("__import__('os').system('true')", 12, "unexpected character"),
    ("__import__ > 1", 1, 'unknown name "__import__"'),
    ("speed_mps.real > 1", 10, "unexpected"),
    ("speed_mps > 1e999", 13, "out of range"),
    ("max_over(speed_mps, 1e300s) > 1", 21, "duration 1e300s is out of range"),
    ("periodic(1e999ms)", 10, "out of range"),
    ("max_over(speed_mps, 0s) > 1", 21, "window 0s is out of range"),
])
def test_expression_errors_name_the_column_and_the_problem(src, column, fragment):
    err = error_of(src)
    assert err.column == column
    assert fragment in str(err)
    assert str(err).startswith(f'trigger "hb": expression error at column {column}: ')


def test_caret_line_points_at_the_offending_span():
    err = error_of("speed_mps > 3 and sped > 1")
    _, excerpt, caret = str(err).split("\n")
    assert excerpt.strip() == "speed_mps > 3 and sped > 1"
    assert caret.index("^") == excerpt.index("sped >")
    assert caret.strip() == "^^^^"


def test_caret_line_stays_aligned_in_a_long_expression():
    src = " or ".join(["speed_mps > 1"] * 20) + " or sped > 1"
    err = error_of(src)
    _, excerpt, caret = str(err).split("\n")
    assert excerpt[caret.index("^"):].startswith("sped")
    assert len(excerpt) < 120


def test_nesting_deeper_than_the_limit_is_refused():
    ok = "(" * (MAX_DEPTH - 1) + "speed_mps > 1" + ")" * (MAX_DEPTH - 1)
    compile_expression(ok)
    err = error_of("(" * (MAX_DEPTH + 1) + "speed_mps > 1" + ")" * (MAX_DEPTH + 1))
    assert "nested too deeply" in str(err)
    assert "nested too deeply" in str(error_of("not " * (MAX_DEPTH + 1) + "brake_pressed"))
    assert "nested too deeply" in str(error_of("-" * (MAX_DEPTH + 1) + "speed_mps > 1"))
    assert "nested too deeply" in str(error_of("abs(" * (MAX_DEPTH + 1) + "speed_mps" + ")" * (MAX_DEPTH + 1)))


def test_expressions_with_too_many_nodes_are_refused():
    src = " or ".join(["speed_mps > 1"] * (MAX_NODES // 3))
    assert len(src) <= MAX_SOURCE_CHARS
    err = error_of(src)
    assert f"more than {MAX_NODES} nodes" in str(err)


def test_source_longer_than_the_limit_is_refused_before_parsing():
    err = error_of("speed_mps > 1" + " " * MAX_SOURCE_CHARS)
    assert f"the limit is {MAX_SOURCE_CHARS}" in str(err)


def test_non_text_expression_is_refused():
    with pytest.raises(ConfigError, match="must be a string"):
        compile_expression(42, trigger="hb")


_GRAMMAR_CHARS = "abcdeilmnoprstvx_0123456789.()<>=!+-*/, &|\t"
_WORDS = st.sampled_from(["speed_mps", "brake_pressed", "divergence", "and", "or", "not", "max_over(",
                          "held(", "rising(", "periodic(", "2s", "500ms", "-4", "(", ")", ",", "<", "==",
                          "abs(", "true", "1e3", "0.", ".", "1e300s", "1e999", "0ms", "9e15s"])


@given(st.one_of(st.text(max_size=80), st.text(alphabet=_GRAMMAR_CHARS, max_size=80),
                 st.lists(_WORDS, max_size=25).map(" ".join)))
def test_random_text_compiles_or_raises_config_error_with_a_valid_column(src):
    try:
        e = compile_expression(src, metric_names=DEFAULT_METRICS, trigger="fuzz")
    except ConfigError as err:
        assert 1 <= err.column <= len(src) + 1
        assert "^" in str(err).splitlines()[-1]
    else:
        assert e.node_count <= MAX_NODES


def test_deeply_nested_windows_compile_and_evaluate_in_linear_size():
    src = "delta(" * 30 + "speed_mps" + ", 1s)" * 30 + " > 0"
    ev = compile_expression(src).evaluator()
    for i in range(200):
        ev.scalar(i * 10_000_000, {"speed_mps": float(i)})  # would be 2**30 node visits if delta copied x
