"""The pure function that turns what a DAG hands over into ids: every rule a user relies on."""

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
        (("x", 1, "x", 1), ["x", 1]),
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


def test_int_and_string_with_same_text_are_different_keys():
    assert normalize_ids([1, "1"]) == [1, "1"]


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [
        ("['a', 'b']", ["a", "b"]),
        ('["a", "b", "a"]', ["a", "b"]),
        ("[1, 2, 3]", [1, 2, 3]),
        ("('a', 2)", ["a", 2]),
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
