"""Shared operator/sensor argument rules."""

import pytest

from airflow_provider_vikingdb.arguments import (
    check_ids_args,
    check_positive_int,
    check_rows_per_second,
    check_target_args,
    jinja_dependency_warning,
    parse_del_all,
    parse_flag,
    rendered_target,
)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ti.xcom_pull(task_ids='find') }}",
        '{{ ti.xcom_pull(task_ids="find") }}',
        "{{ ti.xcom_pull('find') }}",
        "{{ task_instance.xcom_pull( task_ids = 'find' , key='return_value') }}",
        "{{ ti.xcom_pull(key='return_value', task_ids='find') }}",
        "{{ ti.xcom_pull(task_ids=['find']) }}",
        "{{ ti.xcom_pull(task_ids=('find', 'other')) | tojson }}",
        "{{ (ti.xcom_pull(task_ids='other') or []) + ti.xcom_pull(task_ids='find') }}",
    ],
)
def test_jinja_ids_from_a_task_that_is_not_upstream_are_warned_about(template):
    warning = jinja_dependency_warning(template, upstream_task_ids={"other"})
    assert "'find'" in warning and "not upstream" in warning and ".output" in warning
    assert jinja_dependency_warning(template, upstream_task_ids={"find", "other"}) is None


@pytest.mark.parametrize(
    "ids",
    [
        None,
        ["a"],
        "plain-id",
        "{{ params.ids }}",
        "{{ ti.xcom_pull(task_ids=params.task) }}",  # not a literal: nothing to check
        "{{ ti.xcom_pull(dag_id='loader', task_ids='find') }}",  # another DAG's: never upstream
        "{{ ti.xcom_pull(task_ids='find' }}",  # not a call: Jinja will say so
    ],
)
def test_no_warning_without_an_xcom_pull_template(ids):
    assert jinja_dependency_warning(ids, upstream_task_ids=()) is None


def test_target_rules():
    with pytest.raises(ValueError, match="exactly one"):
        check_target_args("t", None, None)
    with pytest.raises(ValueError, match="exactly one"):
        check_target_args("t", "c", "r")
    assert rendered_target("c", "None") == {"collection_name": "c"}
    assert rendered_target("", "vdb-c") == {"resource_id": "vdb-c"}
    with pytest.raises(ValueError, match="rendered"):
        rendered_target(" ", None)


def test_ids_rules():
    with pytest.raises(ValueError, match="not both"):
        check_ids_args("t", ["a"], True, "x")
    with pytest.raises(ValueError, match="give them"):
        check_ids_args("t", None, False, "give them")
    check_ids_args("t", None, "{{ params.purge }}", "x")  # templated: checked at run time


@pytest.mark.parametrize("value", [0, -1, True, False, 1.0, "8", None])
def test_a_positive_int_is_a_whole_number_from_one_and_not_a_bool(value):
    with pytest.raises(ValueError, match=r"^max_concurrency must be a positive integer, got "):
        check_positive_int("max_concurrency", value)


def test_a_positive_int_is_returned_as_given():
    assert check_positive_int("chunk_rows", 1) == 1 and check_positive_int("chunk_rows", 10**6) == 10**6


@pytest.mark.parametrize("value", [0, -0.5, float("nan"), True, "100"])
def test_rows_per_second_is_none_or_a_number_above_zero(value):
    with pytest.raises(ValueError, match=r"^rows_per_second must be > 0 or None, got "):
        check_rows_per_second(value)


@pytest.mark.parametrize("value", [None, 0.5, 1000])
def test_rows_per_second_accepted_as_given(value):
    assert check_rows_per_second(value) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[("true", True), ("True", True), ("TRUE", True), (" true\n", True)],
        *[("false", False), ("False", False), ("FALSE", False), (" false\n", False)],
    ],
)
def test_a_templated_flag_reads_true_and_false_in_any_case(text, value):
    # docs/operators.md: "A templated del_all accepts bools and the text true/false (any case)";
    # dry_run likewise. "{{ params.purge }}" renders a Python False as "False": it must not purge.
    assert parse_del_all(text) is value
    assert parse_flag("dry_run", text) is value
    assert parse_del_all(value) is value


@pytest.mark.parametrize("text", ["", "no", "0", "yes", "None", "False!"])
def test_other_text_for_a_flag_is_refused_naming_it(text):
    with pytest.raises(ValueError, match="del_all must be True/False or the text 'true'/'false'"):
        parse_del_all(text)
