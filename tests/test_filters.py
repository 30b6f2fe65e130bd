"""Delete-by-filter input: the filter language checked path by path, retention cutoffs, combining."""

import copy
import datetime
import json
import numbers
import types
from datetime import timedelta, timezone

import pytest

from airflow_provider_vikingdb.filters import (
    MAX_DEPTH,
    InvalidFilterError,
    and_filters,
    filter_fields,
    parse_filter,
    restricts_nothing,
    retention_filter,
)

MUST = {"op": "must", "field": "source", "conds": ["crm", "erp"]}
RANGE = {"op": "range", "field": "created_at", "gte": 1_700_000_000, "lt": 1_710_000_000}


def refused(value):
    with pytest.raises(InvalidFilterError) as info:
        parse_filter(value)
    return str(info.value)


# ---- accepted filters ----


@pytest.mark.parametrize(
    "value",
    [
        MUST,
        {"op": "must_not", "field": "deleted", "conds": [True]},
        {"op": "must", "field": "tag_ids", "conds": [1, 2, -(2**63), 2**63 - 1]},
        RANGE,
        {"op": "range_out", "field": "score", "gt": 0.25, "lte": 0.75},
        {"op": "range", "field": "t", "gte": 5, "lte": 5},  # one point
        {"op": "range", "field": "t", "lt": -1.5},
        {"op": "and", "conds": [MUST, RANGE]},
        {
            "op": "or",
            "conds": [MUST, {"op": "and", "conds": [RANGE, {"op": "must", "field": "x", "conds": [""]}]}],
        },
    ],
)
def test_a_valid_filter_comes_back_equal(value):
    before = copy.deepcopy(value)
    checked = parse_filter(value)
    assert checked == value and checked is not value
    assert value == before  # not modified
    json.dumps(checked, allow_nan=False)


def test_the_result_is_plain_dicts_and_lists():
    value = types.MappingProxyType({"op": "and", "conds": (types.MappingProxyType(MUST), RANGE)})
    checked = parse_filter(value)
    assert type(checked) is dict and type(checked["conds"]) is list
    assert type(checked["conds"][0]) is dict and checked["conds"][0] == MUST


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"op": "must", "field": "source", "conds": ["crm", "erp"]}', MUST),
        (" {'op': 'must', 'field': 'source', 'conds': ['crm', 'erp']} ", MUST),  # Jinja renders a dict so
        (
            "{'op': 'must_not', 'field': 'ok', 'conds': [True]}",
            {"op": "must_not", "field": "ok", "conds": [True]},
        ),
    ],
)
def test_the_text_of_a_filter_is_parsed_back(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("bound", "number"),
    [
        ("1700000000", 1_700_000_000),
        (" 1700000000 ", 1_700_000_000),
        ("+5", 5),
        ("-12", -12),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("-2.5E-3", -0.0025),
    ],
)
def test_numeric_text_in_a_bound_becomes_a_number(bound, number):
    checked = parse_filter({"op": "range", "field": "t", "gte": bound})
    assert checked["gte"] == number and type(checked["gte"]) is type(number)


def test_a_templated_filter_with_rendered_bounds():
    rendered = {
        "op": "and",
        "conds": [MUST, {"op": "range", "field": "t", "gte": "1700000000", "lt": "1710000000"}],
    }
    assert parse_filter(rendered)["conds"][1] == {
        "op": "range",
        "field": "t",
        "gte": 1_700_000_000,
        "lt": 1_710_000_000,
    }


class HandMadeInt:
    """An integer type that is no int subclass (as numpy's)."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __int__(self):
        return self.value


numbers.Integral.register(HandMadeInt)


def test_integers_of_any_integer_type_become_plain_ints():
    checked = parse_filter(
        {
            "op": "and",
            "conds": [
                {"op": "must", "field": "n", "conds": [HandMadeInt(3)]},
                {"op": "range", "field": "t", "lt": HandMadeInt(9)},
            ],
        }
    )
    assert checked["conds"][0]["conds"] == [3] and type(checked["conds"][0]["conds"][0]) is int
    assert checked["conds"][1]["lt"] == 9 and type(checked["conds"][1]["lt"]) is int


# ---- a filter that restricts nothing is del_all ----


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"op": "and", "conds": []},
        {"op": "or", "conds": []},
        {"op": "and"},
        {"op": "and", "conds": [{}, {"op": "and", "conds": []}]},
        {"op": "or", "conds": [{"op": "and", "conds": [{}]}]},
        "{}",
        '{"op": "and", "conds": []}',
    ],
)
def test_a_filter_that_restricts_nothing_is_refused_as_del_all(value):
    message = refused(value)
    assert "restricts nothing" in message
    assert message.endswith("that is del_all; use del_all=True if you mean it")


def test_restricts_nothing_is_false_for_a_real_filter():
    assert not restricts_nothing(MUST)
    assert not restricts_nothing({"op": "and", "conds": [{}, MUST]})
    assert not restricts_nothing([])


def test_an_empty_and_inside_a_real_filter_is_named():
    message = refused({"op": "or", "conds": [MUST, {"op": "and", "conds": []}]})
    assert message.startswith("filter.conds[1].conds is empty: an empty and restricts nothing")
    message = refused({"op": "and", "conds": [MUST, {}]})
    assert message.startswith("filter.conds[1] is empty ({}): it filters nothing out; remove it")


def test_a_range_out_of_an_empty_range_is_every_record():
    message = refused({"op": "range_out", "field": "t", "gte": 10, "lt": 5})
    assert message == (
        "filter: gte = 10 and lt = 5 leave no value between them: the range is empty, so range_out of it "
        "is every record; that is del_all; use del_all=True if you mean it"
    )


@pytest.mark.parametrize(
    ("bounds", "low", "high"),
    [
        ({"gt": 5, "lt": 5}, "gt = 5", "lt = 5"),
        ({"gte": 5, "lt": 5}, "gte = 5", "lt = 5"),
        ({"gt": 6, "lte": 5.5}, "gt = 6", "lte = 5.5"),
    ],
)
def test_an_empty_range_matches_nothing(bounds, low, high):
    message = refused({"op": "range", "field": "t", **bounds})
    assert (
        message
        == f"filter: {low} and {high} leave no value between them: the range is empty, it matches nothing"
    )


# ---- every refusal names its path and the fix ----


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"field": "a", "conds": [1]},
            "filter has no op: give one of must, must_not, range, range_out, and, or",
        ),
        (
            {"op": "eq", "field": "a", "conds": [1]},
            "filter.op = 'eq' is not a VikingDB filter op: use 'must'",
        ),
        (
            {"op": "not_in", "field": "a", "conds": [1]},
            "filter.op = 'not_in' is not a VikingDB filter op: use 'must_not'",
        ),
        ({"op": "between", "field": "a", "gt": 1}, "use 'range'"),
        (
            {"op": "AND", "conds": [MUST]},
            "filter.op = 'AND' is not a VikingDB filter op: ops are lower case without spaces: 'and'",
        ),
        (
            {"op": "like", "field": "a", "conds": ["x"]},
            "filter.op = 'like' is not a VikingDB filter op: use one of must,",
        ),
        ({"op": 1}, "filter.op = 1 is not a VikingDB filter op: use one of"),
        (
            {"op": "must", "field": "a", "conds": [1], "value": 2},
            (
                "filter has the unknown key 'value': a must filter takes op, field, conds (the values to "
                "match go in conds, a list)"
            ),
        ),
        (
            {"op": "must", "field": "a", "gte": 2},
            (
                "filter has the unknown key 'gte': a must filter takes op, field, conds (for bounds use op "
                "'range'"
            ),
        ),
        (
            {"op": "range", "field": "a", "conds": [1]},
            (
                "filter has the unknown key 'conds': a range filter takes op, field, gt, gte, lt, lte (to "
                "match listed values use op 'must')"
            ),
        ),
        (
            {"op": "and", "field": "a", "conds": [MUST]},
            (
                "filter has the unknown key 'field': an and filter takes op, conds (an and combines "
                "filters in conds"
            ),
        ),
        (
            {"op": "or", "conds": [MUST], "extra": 1},
            "filter has the unknown key 'extra': an or filter takes op, conds",
        ),
        ({"op": "must", "conds": [1]}, "filter.field is missing: a must filter names the field it tests"),
        (
            {"op": "range", "field": "", "gt": 1},
            "filter.field = '' is not a field name: give a non-empty string",
        ),
        ({"op": "range", "field": 5, "gt": 1}, "filter.field = 5 is not a field name"),
        (
            {"op": "must", "field": "f\udc80", "conds": [1]},
            "filter.field = 'f\\udc80' holds a lone surrogate",
        ),
        (
            {"op": "must", "field": "a"},
            "filter.conds is missing: a must filter takes a non-empty list of the values to match",
        ),
        (
            {"op": "must", "field": "a", "conds": []},
            "filter.conds is empty: a must filter takes a non-empty list",
        ),
        (
            {"op": "must_not", "field": "a", "conds": "crm"},
            (
                "filter.conds is a str ('crm'): a must_not filter takes a non-empty list of the values to "
                "match (for one value: ['crm'])"
            ),
        ),
        (
            {"op": "must", "field": "a", "conds": [1.5]},
            (
                "filter.conds[0] = 1.5 is a float: must and must_not match string, int64 and bool fields "
                "exactly; for numbers between bounds use a range filter"
            ),
        ),
        (
            {"op": "must", "field": "a", "conds": [1, 5.0]},
            (
                "filter.conds[1] = 5.0 is a float: must and must_not match string, int64 and bool fields "
                "exactly; write 5"
            ),
        ),
        (
            {"op": "must", "field": "a", "conds": ["x", None]},
            "filter.conds[1] = None is a NoneType: conds holds the values to match",
        ),
        (
            {"op": "must", "field": "a", "conds": [["x"]]},
            "filter.conds[0] = ['x'] is a list: conds holds the values to match",
        ),
        (
            {"op": "must", "field": "a", "conds": [2**63]},
            "filter.conds[0] = 9223372036854775808 is outside the int64 range",
        ),
        (
            {"op": "must", "field": "a", "conds": ["ok", "x\ud800"]},
            "filter.conds[1] = 'x\\ud800' holds a lone surrogate",
        ),
        (
            {"op": "must", "field": "a", "conds": ["x", 1]},
            "filter.conds[1] = 1 is an int64, but filter.conds[0] is a string: a field has one type",
        ),
        (
            {"op": "must", "field": "a", "conds": [True, "x"]},
            "filter.conds[1] = 'x' is a string, but filter.conds[0] is a bool",
        ),
        (
            {"op": "range", "field": "a"},
            "filter has no bound: a range filter takes at least one of gt, gte, lt, lte",
        ),
        (
            {"op": "range_out", "field": "a", "gt": 1, "gte": 2},
            "filter has both gt and gte: give one lower bound",
        ),
        (
            {"op": "range", "field": "a", "lt": 1, "lte": 2},
            "filter has both lt and lte: give one upper bound",
        ),
        (
            {"op": "range", "field": "a", "gte": True},
            "filter.gte is a bool (True): range bounds are int64 or float numbers",
        ),
        (
            {"op": "range", "field": "a", "lt": datetime.date(2026, 1, 1)},
            "filter.lt = datetime.date(2026, 1, 1) is a datetime.date: range bounds are int64 or float "
            "numbers; VikingDB compares times as numbers: give int(moment.timestamp())",
        ),
        (
            {"op": "range", "field": "a", "gte": "abc"},
            (
                "filter.gte = 'abc' is not a number: range bounds are int64 or float numbers (numeric text "
                "such as '1700000000' or '1.5' is read as one)"
            ),
        ),
        ({"op": "range", "field": "a", "gte": ""}, "filter.gte = '' is not a number"),
        ({"op": "range", "field": "a", "gte": "nan"}, "filter.gte = 'nan' is not a number"),
        (
            {"op": "range", "field": "a", "gte": float("inf")},
            "filter.gte is inf: range bounds are int64 or float numbers, and finite",
        ),
        (
            {"op": "range", "field": "a", "lt": 2**63},
            "filter.lt = 9223372036854775808 is outside the int64 range",
        ),
        (
            {"op": "range", "field": "a", "lt": None},
            "filter.lt = None is a NoneType: range bounds are int64 or float numbers",
        ),
        ({"op": "and", "conds": MUST}, "filter.conds is a dict"),
        (
            {"op": "and", "conds": [MUST, "x"]},
            "filter.conds[1] is a str ('x'): each filter is a dict with an op",
        ),
        (
            {
                "op": "and",
                "conds": [MUST, {"op": "or", "conds": [{"op": "range", "field": "t", "gte": "x"}]}],
            },
            "filter.conds[1].conds[0].gte = 'x' is not a number",
        ),
        (
            {"op": "or", "conds": [RANGE, {"op": "must", "field": "a", "conds": [1, "b"]}]},
            "filter.conds[1].conds[1] = 'b' is a string",
        ),
    ],
)
def test_a_bad_filter_is_named_by_its_path(value, message):
    assert message in refused(value)


def test_a_filter_that_contains_itself_is_refused_not_a_crash():
    loop = {"op": "and", "conds": [MUST]}
    loop["conds"].append(loop)
    message = refused(loop)
    assert message.startswith("filter" + ".conds[1]" * MAX_DEPTH)
    assert f"nested more than {MAX_DEPTH} levels deep" in message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "filter is None: give a filter (a dict), or del_all=True"),
        ("None", "filter rendered to 'None': the template produced no filter"),
        ("", "filter rendered to ''"),
        ("null", "filter rendered to 'null'"),
        ("created_at < 5", "filter is a string that is neither JSON nor a Python literal: created_at < 5"),
        ([MUST], "filter must be a dict such as"),
        ("[1]", "got a list: [1]"),
        (5, "got an int: 5"),
    ],
)
def test_the_filter_argument_itself(value, message):
    assert message in refused(value)


# ---- retention ----

REFERENCE = datetime.datetime(2025, 1, 8, 0, 0, 0, 500_000, tzinfo=timezone.utc)  # half a second past


def test_retention_in_seconds_rounds_the_cutoff_down():
    flt, cutoff = retention_filter("created_at", timedelta(days=7), "s", REFERENCE)
    assert cutoff == int(datetime.datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp())
    assert flt == {"op": "range", "field": "created_at", "lt": cutoff}
    assert parse_filter(flt) == flt


def test_retention_in_milliseconds():
    flt, cutoff = retention_filter("ts_ms", 3600, "ms", REFERENCE)
    assert cutoff == int(REFERENCE.timestamp() * 1000) - 3_600_000
    assert flt["lt"] == cutoff and type(cutoff) is int


@pytest.mark.parametrize(("unit", "per_second"), [("s", 1), ("ms", 1000)])
def test_retention_never_matches_a_record_younger_than_older_than(unit, per_second):
    older_than = timedelta(hours=1, microseconds=250)
    flt, cutoff = retention_filter("t", older_than, unit, REFERENCE)
    reference = REFERENCE.timestamp() * per_second
    for t in range(cutoff - 3, cutoff + 3):  # the record's time, in the unit
        matched = t < flt["lt"]
        age = (reference - t) / per_second
        assert not matched or age > older_than.total_seconds()
    assert cutoff - 1 < flt["lt"]  # the first whole unit past the age is matched


def test_retention_reference_in_another_time_zone_is_the_same_instant():
    shanghai = REFERENCE.astimezone(timezone(timedelta(hours=8)))
    assert retention_filter("t", 60, "s", shanghai) == retention_filter("t", 60, "s", REFERENCE)


def test_retention_age_can_be_a_pendulum_duration():
    pendulum = pytest.importorskip("pendulum")
    for unit in ("s", "ms"):
        assert retention_filter("t", pendulum.duration(days=7, microseconds=1500), unit, REFERENCE) == (
            retention_filter("t", timedelta(days=7, microseconds=1500), unit, REFERENCE)
        )


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai"])
def test_retention_reference_can_be_airflows_pendulum_datetime(zone):
    # What a task gets as data_interval_end: a pendulum DateTime, whose difference with a
    # stdlib datetime is a pendulum Interval (this used to raise AttributeError).
    pendulum = pytest.importorskip("pendulum")
    reference = pendulum.instance(REFERENCE).in_timezone(zone)
    for unit in ("s", "ms"):
        assert retention_filter("t", timedelta(days=7), unit, reference) == retention_filter(
            "t", timedelta(days=7), unit, REFERENCE
        )


@pytest.mark.parametrize(
    ("older_than", "age_seconds"),
    [(60, 60), (1.5, 1.5), ("86400", 86400), (" 2.5 ", 2.5), (timedelta(minutes=2), 120)],
)
def test_retention_older_than_forms(older_than, age_seconds):
    _, cutoff = retention_filter("t", older_than, "ms", REFERENCE)
    assert cutoff == int(REFERENCE.timestamp() * 1000 - age_seconds * 1000)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("t", 0, "s", REFERENCE), "older_than = 0 is not above 0"),
        (("t", -5, "s", REFERENCE), "older_than = -5 is not above 0"),
        (
            ("t", timedelta(days=-1), "s", REFERENCE),
            "older_than = datetime.timedelta(days=-1) is not above 0",
        ),
        (("t", True, "s", REFERENCE), "older_than is a bool (True)"),
        (
            ("t", REFERENCE, "s", REFERENCE),
            "is a datetime.datetime: older_than is a timedelta or a number of seconds above 0; an age is "
            "a timedelta, e.g. older_than=timedelta(days=90)",
        ),
        (
            ("t", None, "s", REFERENCE),
            "older_than = None is a NoneType: older_than is a timedelta or a number of seconds above 0",
        ),
        (("t", "a week", "s", REFERENCE), "older_than = 'a week' is not a number"),
        (
            ("t", 60, "sec", REFERENCE),
            (
                "time_unit must be 's' (epoch seconds) or 'ms' (epoch milliseconds), as 't' stores them; "
                "got 'sec'"
            ),
        ),
        (("", 60, "s", REFERENCE), "time_field = '' is not a field name"),
        (("t", 60, ["s"], REFERENCE), "time_unit must be 's' (epoch seconds) or 'ms'"),
        ((None, 60, "s", REFERENCE), "time_field = None is not a field name"),
        (
            ("t", 60, "s", datetime.datetime(2025, 1, 8)),
            "reference datetime.datetime(2025, 1, 8, 0, 0) is a naive datetime",
        ),
        (
            ("t", 60, "s", datetime.date(2025, 1, 8)),
            "reference must be a datetime (the run's data_interval_end), got a datetime.date",
        ),
        (("t", 60, "s", "2025-01-08"), "reference must be a datetime"),
    ],
)
def test_bad_retention_settings_are_named(args, message):
    with pytest.raises(InvalidFilterError) as info:
        retention_filter(*args)
    assert message in str(info.value)


# ---- combining and reading filters ----


def test_and_filters_flattens_and_skips_nothing():
    other = {"op": "must_not", "field": "pinned", "conds": [True]}
    combined = and_filters(None, {"op": "and", "conds": [MUST, {"op": "and", "conds": [RANGE]}]}, {}, other)
    assert combined == {"op": "and", "conds": [MUST, RANGE, other]}
    assert parse_filter(combined) == combined


def test_and_filters_of_one_filter_is_that_filter():
    combined = and_filters(MUST, None)
    assert combined == MUST and combined is not MUST
    assert and_filters({"op": "and", "conds": [RANGE]}) == RANGE


def test_and_filters_keeps_what_is_not_a_plain_and():
    either = {"op": "or", "conds": [MUST, RANGE]}
    assert and_filters(either, MUST) == {"op": "and", "conds": [either, MUST]}
    odd = {"op": "and", "conds": [MUST], "field": "x"}  # not a plain and: parse_filter will name it
    assert and_filters(odd, RANGE) == {"op": "and", "conds": [odd, RANGE]}


def test_and_filters_of_nothing_restricts_nothing():
    assert and_filters() == {} and and_filters(None, {}) == {}
    assert "that is del_all" in refused(and_filters(None))


def test_and_filters_refuses_what_is_not_a_filter():
    with pytest.raises(InvalidFilterError, match="argument 1 is a str"):
        and_filters(MUST, "x")


def test_retention_combined_with_a_user_filter():
    retention, _ = retention_filter("created_at", 86400, "s", REFERENCE)
    combined = parse_filter(
        and_filters(parse_filter('{"op": "must", "field": "source", "conds": ["crm"]}'), retention)
    )
    assert combined["op"] == "and" and combined["conds"][1] == retention


def test_filter_fields_names_every_field_tested():
    value = {
        "op": "and",
        "conds": [MUST, {"op": "or", "conds": [RANGE, {"op": "must", "field": "source", "conds": ["x"]}]}],
    }
    assert filter_fields(value) == {"source", "created_at"}
    assert filter_fields(RANGE) == {"created_at"}
    assert filter_fields(None) == set() and filter_fields({}) == set()
    assert filter_fields({"op": "must", "field": "a", "conds": [{"field": "not a filter"}]}) == {"a"}
