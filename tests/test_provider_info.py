"""Airflow sees the provider, the connection type and its form fields."""

import re
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


# ---- the provider info names everything the package offers

SECTIONS = {"hooks": "hook", "operators": "operator", "sensors": "sensor", "triggers": "trigger"}
ROOT = Path(__file__).resolve().parents[1]


def section_of(value):
    """The provider info section a class belongs in, or None when it is none of the four kinds."""
    from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
    from airflow.triggers.base import BaseTrigger

    if not isinstance(value, type):
        return None
    for base, section in (
        (BaseSensorOperator, "sensors"),
        (BaseOperator, "operators"),
        (BaseTrigger, "triggers"),
        (BaseHook, "hooks"),
    ):
        if issubclass(value, base):
            return section
    return None


def is_private(dotted):
    return any(part.startswith("_") for part in dotted.split("."))


def exported_classes():
    """``(section, class)`` for each public hook, operator, sensor and trigger class of the package.

    Found by walking every public module of the package, not from the provider info: a class
    added in a new module counts too. Public: no leading underscore in the module's dotted name
    or the class's name (and in ``__all__`` when the module has one).
    """
    import importlib
    import pkgutil

    import airflow_provider_vikingdb

    found = set()
    for module_info in pkgutil.walk_packages(
        airflow_provider_vikingdb.__path__, "airflow_provider_vikingdb."
    ):
        if is_private(module_info.name):
            continue
        module = importlib.import_module(module_info.name)
        names = getattr(module, "__all__", [n for n in vars(module) if not n.startswith("_")])
        for name in names:
            value = getattr(module, name)
            section = section_of(value)
            if (
                section
                and not name.startswith("_")
                and value.__module__.startswith("airflow_provider_vikingdb.")
            ):
                found.add((section, value))
    return sorted(found, key=lambda pair: (pair[0], pair[1].__name__))


def what_it_is(cls, section):
    """``VikingDBIndexSyncSensor`` -> ("index-sync", "sensor"); ``VikingDBHook`` -> ("", "hook")."""
    kind = SECTIONS[section]
    stem = cls.__name__.removeprefix("VikingDB").removesuffix(kind.capitalize())
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "-", stem).lower(), kind


def test_the_walk_finds_every_documented_public_class():
    names = {cls.__name__ for _, cls in exported_classes()}
    assert {
        "VikingDBHook",
        "VikingDBDeleteOperator",
        "VikingDBUpsertOperator",
        "VikingDBIndexSyncSensor",
        "VikingDBIndexSyncTrigger",
    } <= names


@pytest.mark.parametrize(("section", "cls"), exported_classes(), ids=lambda v: getattr(v, "__name__", v))
def test_every_exported_class_is_in_the_provider_info(section, cls):
    listed = [m for entry in get_provider_info().get(section, []) for m in entry["python-modules"]]
    if is_private(cls.__module__):  # defined privately: a listed module must expose it
        assert any(getattr(__import__(m, fromlist=["_"]), cls.__name__, None) is cls for m in listed)
    else:  # the module that defines it, as Airflow's own providers list them
        assert cls.__module__ in listed, (
            f"{cls.__name__} ({cls.__module__}) is not in the provider info's {section}"
        )


@pytest.mark.parametrize(("section", "cls"), exported_classes(), ids=lambda v: getattr(v, "__name__", v))
def test_every_exported_class_is_in_both_descriptions(section, cls):
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (summary,) = re.findall(r'^description = "(.*)"$', pyproject, re.M)
    provider = get_provider_info()["description"]
    assert summary == f"Apache Airflow provider for {provider}"
    stem, kind = what_it_is(cls, section)
    words = re.findall(r"[\w-]+", provider.lower())
    assert kind in words or f"{kind}s" in words, f"the description names no {kind}: {provider!r}"
    if stem:
        assert stem in words, (
            f"the description does not name the {stem} {kind} ({cls.__name__}): {provider!r}"
        )
