"""Airflow sees the provider, the connection type and its form fields."""

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_vikingdb.connection import EXTRA_FIELDS
from airflow_provider_vikingdb.get_provider_info import get_provider_info
from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook


def _ui_fields_available() -> bool:
    """Airflow 3.2+ reads conn-fields itself; 3.1 only through the hook's WTForms (the FAB UI)."""
    from airflow import __version__ as airflow_version
    from packaging.version import Version

    if Version(airflow_version) >= Version("3.2"):
        return True
    try:
        import flask_appbuilder  # noqa: F401
    except ImportError:
        return False
    return True


def test_providers_manager_lists_the_provider_and_the_connection_type():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-vikingdb" in manager.providers
    assert manager.hooks["vikingdb"].hook_class_name.endswith("VikingDBHook")
    if not _ui_fields_available():
        pytest.skip("this Airflow has no connection-form UI installed (3.1 without FAB)")
    widgets = {k: v for k, v in manager.connection_form_widgets.items() if k.startswith("extra__vikingdb__")}
    assert set(widgets) == {f"extra__vikingdb__{name}" for name in EXTRA_FIELDS}
    secret = {k.rsplit("__", 1)[1] for k, v in widgets.items() if v.is_sensitive}
    assert secret == {"api_key", "session_token"}
    behaviour = manager.field_behaviours["vikingdb"]
    assert behaviour["relabeling"]["login"] == "Access Key ID"
    assert behaviour["relabeling"]["password"] == "Secret Access Key"
    assert "schema" in behaviour["hidden_fields"]


def test_hook_is_registered_for_the_connection_type():
    info = get_provider_info()
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == VikingDBHook.conn_type == "vikingdb"
    module, _, name = conn["hook-class-name"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is VikingDBHook
    assert VikingDBHook.default_conn_name == "vikingdb_default"


def test_every_listed_module_imports():
    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(section, []):
            for module in entry["python-modules"]:
                __import__(module)


def test_legacy_ui_field_behaviour_is_the_same_definition():
    declared = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    legacy = VikingDBHook.get_ui_field_behaviour()
    assert {k.replace("-", "_"): v for k, v in declared.items()} == legacy


def test_legacy_form_widgets_match_the_declared_fields():
    pytest.importorskip("flask_appbuilder", reason="the FAB connection form of Airflow 3.1 only")
    assert set(VikingDBHook.get_connection_form_widgets()) == set(EXTRA_FIELDS)


def test_airflow_providers_list_shows_the_provider():
    airflow = Path(sys.executable).with_name("airflow")
    out = subprocess.run([str(airflow), "providers", "list"], capture_output=True, text=True, check=True)
    assert "airflow-provider-vikingdb" in out.stdout
