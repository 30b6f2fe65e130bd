"""Shared operator/sensor argument rules."""

import pytest

from airflow_provider_vikingdb.arguments import (
    check_ids_args,
    check_target_args,
    jinja_dependency_warning,
    rendered_target,
)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ti.xcom_pull(task_ids='find') }}",
        '{{ ti.xcom_pull(task_ids="find") }}',
        "{{ ti.xcom_pull('find') }}",
        "{{ task_instance.xcom_pull( task_ids = 'find' , key='return_value') }}",
    ],
)
def test_jinja_ids_from_a_task_that_is_not_upstream_are_warned_about(template):
    warning = jinja_dependency_warning(template, upstream_task_ids={"other"})
    assert "'find'" in warning and "not upstream" in warning and ".output" in warning
    assert jinja_dependency_warning(template, upstream_task_ids={"find"}) is None


@pytest.mark.parametrize("ids", [None, ["a"], "plain-id", "{{ params.ids }}"])
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
