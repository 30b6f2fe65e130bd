"""The pure function that turns what a DAG hands over into ids: every rule a user relies on."""

import decimal
import enum
import fractions
import json
import numbers
import types

import pytest

from airflow_provider_vikingdb.ids import (
    INT64_MAX,
    INT64_MIN,
    InvalidIdsError,
    batched,
    check_batch_size,
    normalize_ids,
    parse_templated_ids,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["a", "b", "a", "c", "b"], ["a", "b", "c"]),
        (("x", "y", "x", "y"), ["x", "y"]),
        ((i for i in [3, 1, 3, 2]), [3, 1, 2]),
        ({"only"}, ["only"]),
        ([INT64_MIN, INT64_MAX], [INT64_MIN, INT64_MAX]),
        ("single", ["single"]),
        (7, [7]),
        ([], []),
    ],
)
def test_deduplicates_in_first_seen_order(given, expected):
    assert normalize_ids(given) == expected


def test_one_key_type_per_list_int_then_string():
    with pytest.raises(InvalidIdsError) as info:
        normalize_ids([1, 2, 2, "3", 4])
    message = str(info.value)
    assert "ids[3] = '3' is a string" in message
    assert "started with an int64 (ids[0] = 1)" in message
    assert "int(...)" in message


def test_one_key_type_per_list_string_then_int():
    with pytest.raises(InvalidIdsError) as info:
        normalize_ids(("a", "b", 7))
    message = str(info.value)
    assert "ids[2] = 7 is an int64" in message
    assert "started with a string (ids[0] = 'a')" in message
    assert "str(...)" in message


def test_mixed_key_types_are_refused_before_anything_after_them_is_read():
    read = []

    def gen():
        for value in ["a", "b", 3, "never read"]:
            read.append(value)
            yield value

    with pytest.raises(InvalidIdsError, match=r"ids\[2\]"):
        normalize_ids(gen())
    assert read == ["a", "b", 3]


def test_jinja_text_of_a_mixed_list_is_refused():
    with pytest.raises(InvalidIdsError, match=r"ids\[1\] = 2 is an int64"):
        normalize_ids("['a', 2]")


@pytest.mark.parametrize(
    ("given", "key_type"),
    [(["a", "b"], "string"), ([3, 1], "int64"), ([], None), ("one", "string"), (5, "int64")],
)
def test_checked_ids_say_their_key_type(given, key_type):
    assert normalize_ids(given).key_type == key_type


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [
        ("['a', 'b']", ["a", "b"]),
        ('["a", "b", "a"]', ["a", "b"]),
        ("[1, 2, 3]", [1, 2, 3]),
        ("('a', 'b')", ["a", "b"]),
        ('["caf\u00e9", "\u4e2d"]', ["caf\u00e9", "\u4e2d"]),
        ("  [ 'spaced' ]  ", ["spaced"]),
        ("[]", []),
    ],
)
def test_jinja_text_of_a_list_is_parsed_back(rendered, expected):
    assert normalize_ids(rendered) == expected


@pytest.mark.parametrize("rendered", ["None", "", "   ", "null"])
def test_jinja_text_of_nothing_is_an_error_with_the_fix(rendered):
    with pytest.raises(InvalidIdsError, match=r"upstream.*\.output"):
        normalize_ids(rendered)


def test_none_is_an_error():
    with pytest.raises(InvalidIdsError, match="ids is None"):
        normalize_ids(None)


def test_broken_list_text_is_an_error_not_one_id():
    with pytest.raises(InvalidIdsError, match="looks like a list"):
        normalize_ids("['a', 'b'")
    with pytest.raises(InvalidIdsError, match="looks like a list"):
        normalize_ids("[a, b]")


@pytest.mark.parametrize(
    ("ids", "position", "what"),
    [
        (["a", True], 1, "bool"),
        ([1, 2, 3.0], 2, "float"),
        (["a", None], 1, "NoneType"),
        ([{"id": 1}], 0, "dict"),
        (["a", ["b"]], 1, "list"),
        (["ok", ""], 1, "empty string"),
        ([1, INT64_MAX + 1], 1, "int64"),
        ([INT64_MIN - 1], 0, "int64"),
        ([b"bytes"], 0, "bytes"),
    ],
)
def test_bad_id_names_the_first_bad_one_and_its_position(ids, position, what):
    with pytest.raises(InvalidIdsError) as info:
        normalize_ids(ids)
    assert f"ids[{position}]" in str(info.value)
    assert what in str(info.value)


def test_validation_happens_before_anything_is_consumed_lazily():
    consumed = []

    def gen():
        for value in ["a", "b", None, "c"]:
            consumed.append(value)
            yield value

    with pytest.raises(InvalidIdsError, match=r"ids\[2\]"):
        normalize_ids(gen())


@pytest.mark.parametrize("bad", [{"a": 1}, b"abc", 1.5, object()])
def test_non_iterables_and_mappings_are_refused(bad):
    with pytest.raises(InvalidIdsError):
        normalize_ids(bad)


def test_parse_templated_ids_leaves_plain_ids_alone():
    assert parse_templated_ids("uid_001") == "uid_001"
    assert parse_templated_ids(["x"]) == ["x"]


def test_batches_are_slices_of_at_most_size():
    ids = list(range(250))
    sizes = [len(b) for b in batched(ids, 100)]
    assert sizes == [100, 100, 50]
    assert [x for b in batched(ids, 100) for x in b] == ids
    assert [len(b) for b in batched(iter(range(5)), 2)] == [2, 2, 1]


@pytest.mark.parametrize("bad", [0, 101, -1, 1.5, "100", True, None])
def test_batch_size_outside_1_to_100_is_refused(bad):
    with pytest.raises(InvalidIdsError, match="batch_size"):
        check_batch_size(bad)


def test_a_checked_list_is_not_checked_again():
    checked = normalize_ids(["a", "b", "a"])
    assert normalize_ids(checked) is checked
    assert normalize_ids(list(checked)) is not checked  # a plain list is checked anew


def sent_bytes(ids):
    """What the hook sends: the ids in a UTF-8 JSON body (ensure_ascii=False, like encode_body)."""
    return json.dumps({"ids": ids}, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    ("ids", "position"),
    [
        (["ok", "\ud800"], 1),
        (["\udfff-tail"], 0),
        (["caf\u00e9", "x\udc80y"], 1),  # what errors='surrogateescape' makes of a stray byte
        ([f"id_{n}" for n in range(300)] + ["bad\ud83d"], 300),  # the high half of an emoji only
    ],
)
def test_an_id_utf8_cannot_encode_is_refused_with_its_position(ids, position):
    with pytest.raises(InvalidIdsError) as info:
        normalize_ids(ids)
    message = str(info.value)
    assert f"ids[{position}]" in message
    assert "lone surrogate" in message and "UTF-8" in message
    with pytest.raises(UnicodeEncodeError):  # the failure the check prevents
        sent_bytes(ids)


def test_a_single_id_with_a_surrogate_is_refused():
    with pytest.raises(InvalidIdsError, match=r"ids\[0\].*lone surrogate \('\\udc80' at character 3\)"):
        normalize_ids("abc\udc80")


def test_every_accepted_id_list_encodes_as_utf8_json():
    ids = normalize_ids(["caf\u00e9", "\u4e2d\u6587", "\U0001f600", "plain", "caf\u00e9"])
    assert ids == ["caf\u00e9", "\u4e2d\u6587", "\U0001f600", "plain"]
    assert json.loads(sent_bytes(ids).decode("utf-8"))["ids"] == ids


class HandMadeInt:
    """An integer type that is no int subclass: registered as numbers.Integral, as numpy's are."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"HandMadeInt({self.value})"


numbers.Integral.register(HandMadeInt)


def test_any_integral_type_becomes_a_plain_int():
    ids = normalize_ids([HandMadeInt(5), 6, HandMadeInt(5), HandMadeInt(INT64_MAX)])
    assert ids == [5, 6, INT64_MAX]
    assert all(type(i) is int for i in ids)
    assert ids.key_type == "int64"
    assert sent_bytes(ids) == b'{"ids": [5, 6, 9223372036854775807]}'


def test_a_single_integral_id_is_one_id():
    assert normalize_ids(HandMadeInt(42)) == [42]


def test_an_integral_outside_int64_is_refused():
    with pytest.raises(InvalidIdsError, match=r"ids\[1\] = 9223372036854775808 is outside the int64 range"):
        normalize_ids([1, HandMadeInt(INT64_MAX + 1)])


def test_int_and_str_subclasses_become_plain_values():
    class Kind(enum.IntEnum):
        A = 1

    class Name(str):
        def __str__(self) -> str:  # a subclass may say anything here: the characters are what is sent
            return "not the id"

    ints = normalize_ids([Kind.A, 1, 2])
    assert ints == [1, 2] and all(type(i) is int for i in ints)
    strs = normalize_ids([Name("a"), "a", Name("b")])
    assert strs == ["a", "b"] and all(type(s) is str for s in strs)
    with pytest.raises(InvalidIdsError, match="empty string"):
        normalize_ids([Name("")])


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (5.0, "is a float"),
        (fractions.Fraction(5), "is a fractions.Fraction"),
        (decimal.Decimal(5), "Decimal"),
    ],
)
def test_a_whole_number_of_a_non_integer_type_is_refused_with_the_fix(value, kind):
    with pytest.raises(InvalidIdsError) as info:
        normalize_ids([1, value])
    message = str(info.value)
    assert "ids[1]" in message and kind in message
    assert "int(x)" in message and "2**53" in message


def test_bytes_are_refused_with_the_fix():
    with pytest.raises(InvalidIdsError, match=r"ids\[1\] = b'b' is bytes.*decode"):
        normalize_ids(["a", b"b"])


def test_none_in_the_list_says_a_value_was_missing():
    with pytest.raises(InvalidIdsError, match=r"ids\[2\] = None \(NoneType\): an upstream value"):
        normalize_ids(["a", "b", None])


def test_a_mapping_is_not_a_list_of_ids():
    with pytest.raises(InvalidIdsError, match="got a mappingproxy"):
        normalize_ids(types.MappingProxyType({"a": 1}))


@pytest.fixture
def np():
    """numpy is not a dependency: the tests using it run where it is installed, and skip elsewhere."""
    return pytest.importorskip("numpy")


def test_numpy_ints_are_plain_ints(np):
    ids = normalize_ids([np.int64(5), np.int32(6), np.uint8(7), np.int64(5)])
    assert ids == [5, 6, 7] and all(type(i) is int for i in ids)
    assert ids.key_type == "int64"
    assert sent_bytes(ids) == b'{"ids": [5, 6, 7]}'


def test_numpy_array_of_ints(np):
    assert normalize_ids(np.array([3, 1, 3], dtype=np.int64)) == [3, 1]


def test_numpy_single_int(np):
    assert normalize_ids(np.int64(5)) == [5]


def test_numpy_uint64_beyond_int64_is_refused(np):
    with pytest.raises(InvalidIdsError, match=r"ids\[0\] = 18446744073709551615 is outside the int64"):
        normalize_ids([np.uint64(2**64 - 1)])


def test_numpy_strings_are_plain_strings(np):
    ids = normalize_ids(np.array(["a", "b", "a"]))
    assert ids == ["a", "b"] and all(type(s) is str for s in ids)
    assert ids.key_type == "string"


def test_numpy_float_is_refused_without_contradiction(np):
    with pytest.raises(InvalidIdsError) as info:
        normalize_ids([1, np.float64(5.0)])
    message = str(info.value)
    assert "ids[1]" in message and "is a numpy.float64" in message
    assert "int(x)" in message


def test_numpy_bool_is_refused_as_a_bool(np):
    with pytest.raises(InvalidIdsError, match=r"ids\[0\] is a bool"):
        normalize_ids([np.bool_(True)])


def test_numpy_ints_and_strings_do_not_mix(np):
    with pytest.raises(
        InvalidIdsError, match=r"ids\[1\] = 'b' is a string, but the list started with an int64"
    ):
        normalize_ids([np.int64(1), np.str_("b")])


def test_an_integral_without_an_integer_value_is_refused():
    class Broken:
        pass

    numbers.Integral.register(Broken)
    with pytest.raises(InvalidIdsError, match=r"ids\[1\] = .*Broken.*without an integer value"):
        normalize_ids([1, Broken()])


def test_a_str_subclass_with_any_characters_becomes_a_plain_str():
    class Name(str):
        pass

    ids = normalize_ids([Name("caf\u00e9"), "x"])
    assert ids == ["caf\u00e9", "x"] and type(ids[0]) is str
    with pytest.raises(InvalidIdsError, match=r"ids\[1\] = 'b\\udc80' holds a lone surrogate"):
        normalize_ids(["a", Name("b\udc80")])


def test_lists_of_ids_are_refused_with_how_to_flatten_them():
    # what a mapped task's output looks like: one list per mapped task
    with pytest.raises(InvalidIdsError, match=r"ids\[0\] = \['a', 'b'\] is a list.*flatten it first"):
        normalize_ids([["a", "b"], ["c"]])
