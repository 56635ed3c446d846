"""Resources: parsing, arithmetic, wire shapes, and algebraic properties."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesos_nb.protocol import messages
from mesos_nb.protocol.resources import ResourceParseError, Resources

AGENT = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]"


def R(text: str) -> Resources:
    return Resources.parse(text)


# ----------------------------------------------------------------------------- parse
def test_parse_agent_flag_syntax():
    r = R("cpus:4;mem:8192;disk:1000;ports:[31000-32000,33000-33010];gpus:1;zones:{a,b}")
    assert r.scalar("cpus") == 4
    assert r.scalar("mem") == 8192
    assert r.scalar("gpus") == 1
    assert r.ranges("ports") == [(31000, 32000), (33000, 33010)]
    assert r.set_items("zones") == frozenset({"a", "b"})
    assert r.roles() == set()
    assert r.is_unreserved()


def test_parse_reserved_and_default_role():
    r = R("cpus(ads):2;cpus:1;mem(eng/backend):10")
    assert r.scalar("cpus") == 3
    assert r.roles() == {"ads", "eng/backend"}
    assert r.reserved("ads") == R("cpus(ads):2")
    assert r.unreserved() == R("cpus:1")
    assert Resources.parse("cpus:1", default_role="web") == R("cpus(web):1")
    assert R("cpus(*):1") == R("cpus:1")


def test_parse_whitespace_empty_tokens_and_merging():
    assert R(" cpus : 1 ; mem:2 ;") == R("cpus:1;mem:2")
    assert R("") == Resources()
    assert not R("")
    assert R("ports:[1-5,6-10,3-4]").ranges("ports") == [(1, 10)]
    assert R("cpus:1;cpus:2").scalar("cpus") == 3


def test_three_decimal_precision_is_exact():
    r = R("cpus:0.1") + R("cpus:0.2")
    assert r == R("cpus:0.3")
    assert r.scalar("cpus") == 0.3
    assert R("cpus:0.0004") == Resources()  # rounds to zero thousandths
    assert R("cpus:1.0006").scalar("cpus") == 1.001


@pytest.mark.parametrize(
    "text, sentence",
    [
        ("cpus:lots", "Bad resource 'cpus:lots': 'lots' is not a number"),
        ("cpus:-1", "Bad resource 'cpus:-1': value must not be negative"),
        ("cpus:nan", "Bad resource 'cpus:nan': 'nan' is not a finite number"),
        ("cpus:inf", "Bad resource 'cpus:inf': 'inf' is not a finite number"),
        ("cpus:", "Bad resource 'cpus:': missing value"),
        (":4", "Bad resource ':4': missing resource name"),
        ("cpus", "Bad resource 'cpus': expected name:value"),
        ("ports:[1-2", "Bad resource 'ports:[1-2': unbalanced brackets in ranges value"),
        ("ports:1-2]", "Bad resource 'ports:1-2]': unbalanced brackets in ranges value"),
        ("ports:[5-3]", "Bad resource 'ports:[5-3]': range 5-3 has begin greater than end"),
        ("ports:[a-b]", "Bad resource 'ports:[a-b]': range 'a-b' is not of the form begin-end"),
        ("zones:{a,b", "Bad resource 'zones:{a,b': unbalanced braces in set value"),
        ("zones:{a,,b}", "Bad resource 'zones:{a,,b}': set has an empty item"),
        ("c pus:1", "Bad resource 'c pus:1': 'c pus' is not a valid resource name"),
        ("cpus(ads:1", "Bad resource 'cpus(ads:1': unbalanced parentheses around the role"),
        ("cpus(-x):1", "Bad resource 'cpus(-x):1': role '-x' is not a valid role name: it has a component starting with '-'"),
        ("cpus:1;cpus:[1-2]", "Bad resource 'cpus:[1-2]': 'cpus' was already given as a SCALAR resource"),
    ],
)
def test_parse_errors_are_one_sentence(text, sentence):
    with pytest.raises(ResourceParseError) as ei:
        R(text)
    assert str(ei.value) == sentence
    assert isinstance(ei.value, ValueError)
    assert "\n" not in str(ei.value)


def test_parse_json_array_form():
    text = (
        '[{"name":"cpus","type":"SCALAR","scalar":{"value":2}},'
        '{"name":"ports","role":"*","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]}},'
        '{"name":"mem","type":"SCALAR","scalar":{"value":64},"reservations":[{"type":"STATIC","role":"ads"}]}]'
    )
    assert R(text) == R("cpus:2;ports:[31000-32000];mem(ads):64")
    with pytest.raises(ResourceParseError, match="Bad resources JSON"):
        R('[{"name":"cpus"}]')
    with pytest.raises(ResourceParseError, match="Bad resources JSON"):
        R("[{")


# ----------------------------------------------------------------------------- proto
def test_to_proto_shapes():
    r = R("cpus:4;cpus(ads):2;ports:[31000-32000];zones:{b,a}")
    items = msgspec.to_builtins(r.to_proto())
    assert {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0}, "role": "*"} in items
    assert {
        "name": "cpus",
        "type": "SCALAR",
        "scalar": {"value": 2.0},
        "role": "ads",
        "reservations": [{"type": "STATIC", "role": "ads"}],
    } in items
    assert {
        "name": "ports",
        "type": "RANGES",
        "ranges": {"range": [{"begin": 31000, "end": 32000}]},
        "role": "*",
    } in items
    assert {"name": "zones", "type": "SET", "set": {"item": ["a", "b"]}, "role": "*"} in items
    withalloc = msgspec.to_builtins(r.to_proto(allocation_role="ads"))
    assert all(i["allocation_info"] == {"role": "ads"} for i in withalloc)
    assert Resources.from_proto(r.to_proto("ads")) == r


def test_from_proto_validation():
    S = messages.Scalar
    with pytest.raises(ResourceParseError, match="must have only a scalar value"):
        Resources.from_proto([messages.Resource(name="cpus", type="SCALAR")])
    with pytest.raises(ResourceParseError, match="negative value"):
        Resources.from_proto([messages.Resource(name="cpus", type="SCALAR", scalar=S(value=-1))])
    with pytest.raises(ResourceParseError, match="not a finite number"):
        Resources.from_proto(
            [messages.Resource(name="cpus", type="SCALAR", scalar=S(value=float("nan")))]
        )
    with pytest.raises(ResourceParseError, match="begin is greater than its end"):
        Resources.from_proto(
            [
                messages.Resource(
                    name="ports",
                    type="RANGES",
                    ranges=messages.Ranges(range=[messages.Range(begin=5, end=3)]),
                )
            ]
        )
    with pytest.raises(ResourceParseError, match="must have only a set value"):
        Resources.from_proto(
            [messages.Resource(name="z", type="SET", scalar=S(value=1))]
        )
    legacy = messages.Resource(name="cpus", type="SCALAR", scalar=S(value=1), role="ads")
    assert Resources.from_proto([legacy]) == R("cpus(ads):1")


# ----------------------------------------------------------------------------- algebra
def test_add_sub_contains():
    a = R(AGENT)
    b = R("cpus:1;mem:128;ports:[31000-31004]")
    left = a - b
    assert left.scalar("cpus") == 23
    assert left.ranges("ports") == [(31005, 32000)]
    assert a.contains(b)
    assert not b.contains(a)
    assert left + b == a
    assert (b - a) == Resources()  # saturates
    assert not (b - a)
    assert R("ports:[1-10]") - R("ports:[3-4,8-20]") == R("ports:[1-2,5-7]")
    assert R("z:{a,b,c}") - R("z:{b}") == R("z:{a,c}")
    assert not R("cpus(ads):1").contains(R("cpus:1"))  # roles are distinct components
    assert R("cpus:2").intersection(R("cpus:1;mem:3")) == R("cpus:1")


def test_equality_ignores_order_and_zeroes():
    assert R("cpus:1;mem:2") == R("mem:2;cpus:1")
    assert R("cpus:0;mem:2") == R("mem:2")
    assert R("cpus:1") != R("cpus:2")
    assert R("cpus:1") != "cpus:1"


def test_queries_and_allocatable_to():
    r = R("cpus:1;cpus(eng):2;cpus(eng/backend):4;cpus(ads):8")
    assert r.scalars() == {"cpus": 15}
    assert r.allocatable_to("eng/backend") == R("cpus:1;cpus(eng):2;cpus(eng/backend):4")
    assert r.allocatable_to("eng") == R("cpus:1;cpus(eng):2")
    assert r.allocatable_to("web") == R("cpus:1")
    assert r.reserved() == R("cpus(eng):2;cpus(eng/backend):4;cpus(ads):8")


def test_summary_shape():
    assert R("").summary() == {"cpus": 0, "gpus": 0, "mem": 0, "disk": 0}
    s = R("cpus:1.5;cpus(ads):1;foo:3;ports:[31000-32000,1-2];zones:{b,a}").summary()
    assert s == {
        "cpus": 2.5,
        "gpus": 0,
        "mem": 0,
        "disk": 0,
        "foo": 3,
        "ports": "[1-2, 31000-32000]",
        "zones": "{a, b}",
    }


def test_str_is_mesos_text():
    assert str(R("cpus:4;mem:8192;ports:[31000-32000]")) == "cpus:4;mem:8192;ports:[31000-32000]"
    assert str(R("cpus(ads):2")) == "cpus(ads):2"
    assert str(R("cpus:0.5")) == "cpus:0.5"
    assert repr(R("cpus:1")) == "Resources('cpus:1')"


def test_pick_ports():
    r = R("ports:[31000-31001,31005-31010]")
    assert r.pick_ports(3) == R("ports:[31000-31001,31005-31005]")
    assert r.pick_ports(0) == Resources()
    with pytest.raises(ValueError):
        r.pick_ports(100)


# ----------------------------------------------------------------------------- properties
names = st.sampled_from(["cpus", "mem", "disk", "gpus"])
roles = st.sampled_from(["*", "ads", "eng/backend"])
millis = st.integers(min_value=0, max_value=10**9)


@st.composite
def resources(draw):
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        n, role, m = draw(names), draw(roles), draw(millis)
        label = n if role == "*" else f"{n}({role})"
        parts.append(f"{label}:{m / 1000:.3f}")
    for _ in range(draw(st.integers(0, 2))):
        b = draw(st.integers(0, 1000))
        e = b + draw(st.integers(0, 50))
        role = draw(roles)
        label = "ports" if role == "*" else f"ports({role})"
        parts.append(f"{label}:[{b}-{e}]")
    for _ in range(draw(st.integers(0, 2))):
        items = draw(st.sets(st.sampled_from(list("abcdef")), min_size=1))
        parts.append("zones:{" + ",".join(sorted(items)) + "}")
    return Resources.parse(";".join(parts))


@settings(max_examples=200, deadline=None)
@given(resources(), resources())
def test_prop_add_then_sub(a, b):
    assert (a + b).contains(a)
    assert (a + b).contains(b)
    # scalars are exact; ranges/sets union-then-difference can also drop shared parts
    assert (a + b - b).scalar_millis() == a.scalar_millis()
    assert a.contains(a - b)


@settings(max_examples=200, deadline=None)
@given(resources())
def test_prop_roundtrips(a):
    assert Resources.parse(str(a)) == a
    assert Resources.from_proto(a.to_proto("r")) == a
    assert Resources.parse(msgspec.json.encode(a.to_proto()).decode()) == a
    assert a - a == Resources()


@settings(max_examples=200, deadline=None)
@given(resources(), resources())
def test_prop_contains_matches_sub(a, b):
    # a contains b exactly when nothing of b is left after taking a away
    assert a.contains(b) == (not (b - a))
    assert a.intersection(b) == b.intersection(a)
