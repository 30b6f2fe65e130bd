"""The checks an upsert's input passes before anything is sent: records, JSON Lines and ttl."""

import collections
import datetime
import decimal
import enum
import io
import json
import numbers
import types

import pytest

from airflow_provider_vikingdb.ids import INT64_MAX, CheckedIds, normalize_ids
from airflow_provider_vikingdb.records import (
    MAX_DEPTH,
    TTL_MAX,
    CheckedRecords,
    InvalidRecordsError,
    RecordChecker,
    check_id_field,
    check_record,
    check_records,
    check_ttl,
    iter_jsonl_records,
    parse_templated_records,
)

NAN, INF = float("nan"), float("inf")


class Floats(list):
    """A list subclass, which the JSON encoder takes as a list."""


def sent_bytes(records):
    """The upsert body as the hook encodes it, but strict: NaN or infinity would raise here."""
    return json.dumps({"data": records}, ensure_ascii=False, allow_nan=False).encode("utf-8")


def refused(records, id_field="id"):
    with pytest.raises(InvalidRecordsError) as info:
        check_records(records, id_field)
    return str(info.value)


def vector(n=32, bad_at=None, bad=NAN):
    values = [i / n for i in range(n)]
    if bad_at is not None:
        values[bad_at] = bad
    return values


# ---- what is accepted ----


def test_checked_records_keep_the_records_and_their_keys_in_order():
    records = [
        {"id": 3, "vector": vector(), "text": "caf\u00e9"},
        {"id": 1, "vector": vector(), "text": None},
    ]
    checked = check_records(records)
    assert isinstance(checked, CheckedRecords)
    assert checked == records and checked[0] is records[0]  # dicts are not copied
    assert checked.ids == [3, 1] and isinstance(checked.ids, CheckedIds)
    assert checked.key_type == "int64" and checked.id_field == "id"
    assert json.loads(sent_bytes(checked))["data"] == records


def test_string_keys_and_another_id_field():
    checked = check_records([{"doc": "a", "n": 1}, {"doc": "b", "n": 2}], id_field="doc")
    assert checked.ids == ["a", "b"] and checked.key_type == "string"
    assert normalize_ids(checked.ids) is checked.ids  # written ids go to a delete unchecked again


def test_the_keys_of_a_batch_are_the_same_slice_of_ids():
    checked = check_records([{"id": n} for n in range(1, 251)])
    for start in range(0, 250, 100):
        batch = checked[start : start + 100]
        assert checked.ids[start : start + 100] == [r["id"] for r in batch]


@pytest.mark.parametrize(
    "records",
    [
        ({"id": 1}, {"id": 2}),
        ({"id": n} for n in (1, 2)),
        [collections.OrderedDict(id=1), {"id": 2}],
    ],
)
def test_any_iterable_of_dicts(records):
    assert check_records(records).ids == [1, 2]


def test_a_mapping_that_is_not_a_dict_becomes_a_dict():
    record = collections.ChainMap({"id": 1}, {"v": [1.0]})
    checked = check_records([record])
    assert type(checked[0]) is dict and checked[0] == {"id": 1, "v": [1.0]}
    sent_bytes(checked)


def test_empty_list_has_no_key_type():
    checked = check_records([])
    assert checked == [] and checked.ids == [] and checked.key_type is None


def test_a_checked_list_is_not_checked_again_for_the_same_id_field():
    checked = check_records([{"id": 1, "doc": "a"}])
    assert check_records(checked) is checked
    assert check_records(checked, "doc").ids == ["a"]


@pytest.mark.parametrize(
    "value",
    [
        [1e308, 1e308],  # the sum overflows; every value is finite
        [0, 0.5, 1],  # ints and floats in one vector
        [-(2**63), 2**63 - 1],
        ["a", "\u4e2d", "\U0001f600"],
        ["plain", "ascii"],
        collections.OrderedDict(a=[1.5]),
        [True, False, None],
        ((1.5, 2.5), [[1, 2], [3, 4]]),
        {"sparse": {"12": 0.5, "40": 0.25}},
        [],
        "",
    ],
)
def test_json_values_vikingdb_takes_are_accepted(value):
    checked = check_records([{"id": "a", "f": value}])
    sent_bytes(checked)


def test_a_key_of_a_str_subclass_is_a_plain_str():
    class Name(str):
        pass

    assert check_records([{"id": Name("a")}]).ids == ["a"]
    assert type(check_records([{"id": Name("a")}]).ids[0]) is str
    assert "records[0]['id'] is an empty string" in refused([{"id": Name("")}])


def test_subclasses_the_json_encoder_takes_are_accepted():
    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    class Score(float):
        pass

    record = {"id": Level.HIGH, "level": Level.HIGH, "name": Name("x"), "score": Score(0.5), Name("f"): 1}
    checked = check_records([record])
    assert checked.ids == [3] and type(checked.ids[0]) is int
    assert json.loads(sent_bytes(checked))["data"] == [
        {"id": 3, "level": 3, "name": "x", "score": 0.5, "f": 1}
    ]


# ---- what is refused, and how it is named ----


def test_nan_in_a_vector_names_the_record_the_field_and_the_element():
    records = [{"id": n, "vector": vector()} for n in range(1, 4)] + [{"id": 4, "vector": vector(bad_at=17)}]
    message = refused(records)
    assert message.startswith("records[3]['vector'][17] is NaN:")
    assert "JSON has no NaN or infinity" in message


@pytest.mark.parametrize(
    ("value", "where", "what"),
    [
        (INF, "['score']", "is infinite"),
        (-INF, "['score']", "is -infinite"),
        ([1.0, [2.0, -INF]], "['score'][1][1]", "is -infinite"),
        ({"a": [{"b": NAN}]}, "['score']['a'][0]['b']", "is NaN"),
        ((1.0, NAN), "['score'][1]", "is NaN"),
        ([1, 2.5, 2**63], "['score'][2]", "= 9223372036854775808 is outside the int64 range"),
        (-(2**63) - 1, "['score']", "is outside the int64 range"),
        ([2**70, 0.5], "['score'][0]", "is outside the int64 range"),
        ([0.5, 2**1100], "['score'][1]", "is outside the int64 range"),  # too large for a float, too
        (Floats([0.5, NAN]), "['score'][1]", "is NaN"),
        (collections.OrderedDict(v=[INF]), "['score']['v'][0]", "is infinite"),
        (types.MappingProxyType({"a": 1}), "['score']", "is a mappingproxy, which JSON cannot encode"),
        (collections.UserList([1]), "['score']", "is a collections.UserList, which JSON cannot encode"),
        ("x\udc80", "['score']", "holds a lone surrogate ('\\udc80' at character 1)"),
        (["ok", "\ud800"], "['score'][1]", "holds a lone surrogate"),
        ({"k\ud800": 1}, "['score']", "has the key 'k\\ud800', which holds a lone surrogate"),
        ({1: 2}, "['score']", "has the key 1 (int): keys are strings"),
        ({1, 2}, "['score']", "is a set, which JSON cannot encode"),
        (b"raw", "['score']", "is bytes, which JSON cannot encode"),
        (decimal.Decimal("0.5"), "['score']", "float(...)"),
        (datetime.date(2025, 1, 1), "['score']", "is a datetime.date, which JSON cannot encode"),
        ([object()], "['score'][0]", "is an object, which JSON cannot encode"),
    ],
)
def test_a_value_json_cannot_carry_is_named_by_its_path(value, where, what):
    message = refused([{"id": "a", "score": 0.5}, {"id": "b", "score": value}])
    assert message.startswith(f"records[1]{where} ")
    assert what in message


def test_a_value_with_tolist_is_told_to_use_it():
    class ArrayLike:  # numpy arrays and numbers have tolist(); numpy need not be installed
        def tolist(self):
            return [1.0]

    assert ".tolist()" in refused([{"id": 1, "v": ArrayLike()}])


def test_a_value_that_contains_itself_is_refused_not_a_crash():
    loop = []
    loop.append(loop)
    message = refused([{"id": 1, "loop": loop}])
    assert message.startswith("records[0]['loop'][0][0]")
    assert f"nested more than {MAX_DEPTH} levels deep" in message
    mapping = {}
    mapping["m"] = mapping
    message = refused([{"id": 1, "m": mapping}])
    assert message.startswith("records[0]['m']['m']['m']")
    assert f"nested more than {MAX_DEPTH} levels deep" in message


def test_a_field_name_must_be_a_string_without_surrogates():
    assert refused([{"id": 1, 7: "x"}]) == "records[0] has the field name 7 (int): field names are strings"
    assert "records[0] has the field name 'f\\udc80', which holds a lone surrogate" in refused(
        [{"id": 1, "f\udc80": "x"}]
    )


@pytest.mark.parametrize(
    ("record", "what"),
    [
        ([("id", 1)], "records[1] = [('id', 1)] is a list, not a dict"),
        ("id=1", "records[1] = 'id=1' is a str, not a dict"),
        (None, "records[1] = None is a NoneType, not a dict"),
    ],
)
def test_a_record_must_be_a_dict(record, what):
    assert what in refused([{"id": 9}, record])


def test_a_record_without_its_key_lists_its_fields():
    message = refused([{"doc_id": "a", "vector": [1.0]}])
    assert message.startswith("records[0] has no 'id' field (its fields: 'doc_id', 'vector')")
    assert "id_field=" in message


@pytest.mark.parametrize(
    ("key", "what"),
    [
        (0, "records[0]['id'] is 0: VikingDB refuses 0 as a primary key"),
        ("", "records[0]['id'] is an empty string"),
        (True, "records[0]['id'] is a bool (True)"),
        (None, "records[0]['id'] is None"),
        (5.0, "records[0]['id'] = 5.0 is a float"),
        (INT64_MAX + 1, "records[0]['id'] = 9223372036854775808 is outside the int64 range"),
        ("a\ud800", "records[0]['id'] = 'a\\ud800' holds a lone surrogate"),
        (["a"], "records[0]['id'] = ['a'] is a list"),
    ],
)
def test_a_bad_key_is_named(key, what):
    assert refused([{"id": key}]).startswith(what)


class HandMadeInt:
    """An integer type that is no int subclass (as numpy's): JSON cannot encode it."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"HandMadeInt({self.value})"


numbers.Integral.register(HandMadeInt)


def test_an_integer_json_cannot_encode_is_refused_with_the_fix():
    message = refused([{"id": HandMadeInt(5)}])
    assert "records[0]['id'] = HandMadeInt(5) is a tests.test_records.HandMadeInt" in message
    assert "int(...)" in message
    assert "int(...)" in refused([{"id": 1, "n": HandMadeInt(5)}])


def test_one_key_type_across_records():
    message = refused([{"id": 1}, {"id": 2}, {"id": "3"}])
    assert message.startswith("records[2]['id'] = '3' is a string, but records[0] has an int64 key")
    message = refused([{"id": "a"}, {"id": 2}])
    assert message.startswith("records[1]['id'] = 2 is an int64, but records[0] has a string key")


def test_a_repeated_key_names_both_records():
    message = refused([{"id": "a"}, {"id": "b"}, {"id": "a", "v": 2}])
    assert message.startswith("records[2]['id'] = 'a' is the key of records[0] too")
    assert "one record per key" in message


def test_the_first_bad_record_stops_the_check():
    seen = []

    def records():
        for n in (1, 2, 0, 4):
            seen.append(n)
            yield {"id": n}

    with pytest.raises(InvalidRecordsError, match=r"records\[2\]"):
        check_records(records())
    assert seen == [1, 2, 0]


def test_check_record_alone_returns_the_key_and_its_type():
    assert check_record({"id": "a"}, 0) == ("a", "string")
    assert check_record({"pk": 7}, 5, "pk", "int64") == (7, "int64")
    with pytest.raises(InvalidRecordsError) as info:
        check_record({"id": "a"}, 4, "id", "int64")
    assert str(info.value).startswith(
        "records[4]['id'] = 'a' is a string, but the records before it have int64 keys"
    )


def test_record_checker_counts_and_tracks_the_key_type():
    checker = RecordChecker("pk")
    assert checker.key_type is None and checker.count == 0
    assert checker.check({"pk": "x"}) == "x"
    assert checker.check({"pk": "y"}) == "y"
    assert checker.key_type == "string" and checker.count == 2
    with pytest.raises(InvalidRecordsError, match=r"records\[2\]\['pk'\] = 'x' is the key of records\[0\]"):
        checker.check({"pk": "x"})


@pytest.mark.parametrize("bad", ["", None, 1, ["id"]])
def test_id_field_must_be_a_field_name(bad):
    with pytest.raises(InvalidRecordsError, match="id_field must be"):
        check_id_field(bad)
    with pytest.raises(InvalidRecordsError, match="id_field must be"):
        check_records([{"id": 1}], bad)


# ---- the records argument itself ----


@pytest.mark.parametrize(
    ("rendered", "ids"),
    [
        ('[{"id": 1, "v": [0.5, 1.0]}, {"id": 2, "v": [0.0, 1.0]}]', [1, 2]),
        ("[{'id': 'a', 'ok': True, 'n': None}]", ["a"]),  # what Jinja renders of a Python list
        ("  []  ", []),
    ],
)
def test_jinja_text_of_a_list_is_parsed_back(rendered, ids):
    assert check_records(rendered).ids == ids


def test_jinja_text_with_json_nan_is_parsed_then_refused_by_field():
    assert refused('[{"id": 1, "v": [0.5, NaN]}]').startswith("records[0]['v'][1] is NaN")


@pytest.mark.parametrize("rendered", ["None", "", "  ", "null"])
def test_jinja_text_of_nothing_is_an_error_with_the_fix(rendered):
    message = refused(rendered)
    assert f"records rendered to {rendered!r}" in message
    assert "records=upstream_task.output" in message


def test_text_that_is_no_list_is_an_error():
    message = refused("[{'id': 1, 'v': [nan]}]")
    assert "neither JSON nor a Python literal" in message and "nan" in message
    assert "neither JSON nor a Python literal" in refused("id=1")


def test_parse_templated_records_leaves_lists_alone():
    records = [{"id": 1}]
    assert parse_templated_records(records) is records


@pytest.mark.parametrize(
    ("records", "what"),
    [
        (None, "records is None"),
        ({"id": 1}, "got one dict: wrap a single record in a list ([record])"),
        ('{"id": 1}', "got one dict"),
        (5, "got a int"),
        (b"[]", "got a bytes"),
        ('"text"', "got a str"),
    ],
)
def test_records_must_be_a_list(records, what):
    assert what in refused(records)


# ---- JSON Lines ----


def test_jsonl_records_in_order_blank_lines_skipped():
    lines = ['{"id": 1, "v": [0.5]}\n', "\n", "   \n", '{"id": 2, "v": [1.5]}\r\n']
    assert list(iter_jsonl_records(lines)) == [{"id": 1, "v": [0.5]}, {"id": 2, "v": [1.5]}]


def test_jsonl_from_a_binary_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a"}\n{"id": "caf\xc3\xa9"}\n')
    with path.open("rb") as f:
        assert [r["id"] for r in iter_jsonl_records(f)] == ["a", "caf\u00e9"]
    with path.open(encoding="utf-8") as f:
        assert [r["id"] for r in iter_jsonl_records(f)] == ["a", "caf\u00e9"]


def test_jsonl_from_the_whole_text():
    assert [r["k"] for r in iter_jsonl_records('{"k": 1}\n{"k": 2}\n', id_field="k")] == [1, 2]
    assert [r["k"] for r in iter_jsonl_records(b'{"k": 1}\n{"k": 2}', id_field="k")] == [1, 2]


def jsonl_error(text, id_field="id"):
    with pytest.raises(InvalidRecordsError) as info:
        list(iter_jsonl_records(io.StringIO(text), id_field))
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{"id": 1}\n\n{"id": 2,}\n', "line 3 is not valid JSON (Expecting property name"),
        ('{"id": 1}\n{"id": 2} x\n', "line 2 is not valid JSON (Extra data at column 11)"),
        ('{"id": 1}\n[1, 2]\n', "line 2 holds a JSON array, not an object"),
        ('"text"\n', "line 1 holds a JSON string, not an object"),
        ("null\n", "line 1 holds a JSON null"),
        ("true\n", "line 1 holds a JSON boolean"),
        ("5\n", "line 1 holds a JSON number"),
        ("[" * 100_000 + "\n", "line 1 is nested too deeply to be a record"),
        ('{"id": 1}\n{"id": 2, "v": [0.5, NaN]}\n', "line 2: record['v'][1] is NaN"),
        ('{"id": 1}\n{"id": 2, "v": [Infinity]}\n', "line 2: record['v'][0] is infinite"),
        ('{"id": 1, "t": "\\ud800"}\n', "line 1: record['t'] holds a lone surrogate"),
        ('{"id": 1}\n{"x": 2}\n', "line 2: record has no 'id' field"),
        ('{"id": 1}\n{"id": 0}\n', "line 2: record['id'] is 0"),
        ('{"id": 1}\n\n{"id": "b"}\n', "line 3: record['id'] = 'b' is a string, but line 1 has an int64 key"),
        ('{"id": 1}\n{"id": 2}\n\n{"id": 1}\n', "line 4: record['id'] = 1 is the key of line 1 too"),
    ],
)
def test_a_bad_line_is_named_by_its_number(text, what):
    assert what in jsonl_error(text)


def test_a_line_that_is_not_utf8_is_named():
    with pytest.raises(InvalidRecordsError, match=r"line 2 is not UTF-8 \(invalid start byte at byte 8\)"):
        list(iter_jsonl_records([b'{"id": 1}', b'{"id": "\xff"}']))


def test_lines_must_be_text_or_bytes():
    with pytest.raises(InvalidRecordsError, match="line 1 is a dict"):
        list(iter_jsonl_records([{"id": 1}]))


def test_jsonl_is_checked_as_it_streams():
    """The operator's first pass reads the file to the first bad line; nothing is sent on bad input."""
    records = iter_jsonl_records(['{"id": 1}', '{"id": 2}', "{bad", '{"id": 4}'])
    assert next(records) == {"id": 1}
    assert next(records) == {"id": 2}
    with pytest.raises(InvalidRecordsError, match="line 3"):
        next(records)


# ---- ttl ----


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        (60, 60),
        (TTL_MAX, TTL_MAX),
        (604800.0, 604800),
        (datetime.timedelta(days=7), 604800),
        (datetime.timedelta(days=7).total_seconds(), 604800),
        ("86400", 86400),
        (" 3600 ", 3600),
        ("3600.0", 3600),
        ("", None),
        ("None", None),
        (HandMadeInt(5), 5),
    ],
)
def test_ttl_is_whole_seconds(value, seconds):
    result = check_ttl(value)
    assert result == seconds
    assert result is None or type(result) is int


def test_ttl_can_be_a_pendulum_duration():
    # Airflow's own durations are pendulum's, which refuse divmod by a stdlib timedelta.
    pendulum = pytest.importorskip("pendulum")
    assert check_ttl(pendulum.duration(days=7)) == 604800
    assert check_ttl(pendulum.duration(months=1)) == 30 * 86400  # pendulum counts a month as 30 days
    with pytest.raises(InvalidRecordsError, match="is not a whole number of seconds"):
        check_ttl(pendulum.duration(seconds=1, microseconds=5))


@pytest.mark.parametrize(
    ("value", "what"),
    [
        (0, "ttl = 0 is outside 1..2147483647 seconds"),
        (-5, "ttl = -5 is outside"),
        (TTL_MAX + 1, "ttl = 2147483648 is outside"),
        (datetime.timedelta(days=30_000), "(2592000000 seconds) is outside"),
        (datetime.timedelta(0), "ttl = datetime.timedelta(0) (0 seconds) is outside"),
        ("0", "ttl = '0' (0 seconds) is outside"),
        (True, "ttl is a bool"),
        (1.5, "ttl = 1.5 is not a whole number of seconds"),
        (NAN, "ttl = nan is not a whole number"),
        (datetime.timedelta(seconds=1.5), "is not a whole number of seconds"),
        ("a week", "ttl rendered to 'a week', which is not a number"),
        ([60], "ttl = [60] is a list"),
        (decimal.Decimal(60), "is a decimal.Decimal"),
    ],
)
def test_a_bad_ttl_is_refused_by_name(value, what):
    with pytest.raises(InvalidRecordsError) as info:
        check_ttl(value)
    assert what in str(info.value)


# ---- numpy, where installed (not a dependency) ----


@pytest.fixture
def np():
    return pytest.importorskip("numpy")


def test_numpy_values_are_refused_with_tolist(np):
    message = refused([{"id": 1, "vector": np.array([0.5, 1.0], dtype=np.float32)}])
    assert message.startswith("records[0]['vector'] is a numpy.ndarray, which JSON cannot encode")
    assert ".tolist()" in message
    assert "int(...)" in refused([{"id": np.int64(5)}])
    assert ".tolist()" in refused([{"id": 1, "v": [np.float32(0.5)]}])


def test_numpy_float64_is_a_float(np):
    checked = check_records([{"id": 1, "score": np.float64(0.5)}])
    assert json.loads(sent_bytes(checked))["data"][0]["score"] == 0.5
    assert refused([{"id": 1, "score": np.float64("nan")}]).startswith("records[0]['score'] is NaN")


def test_numpy_ttl(np):
    assert check_ttl(np.int64(60)) == 60 and check_ttl(np.float64(60.0)) == 60
