"""The one definition of the ``vikingdb`` connection form.

Airflow 3.2+ reads it declaratively from the provider info (``conn-fields`` and
``ui-field-behaviour``); Airflow 3.1 calls the hook's
``get_connection_form_widgets`` / ``get_ui_field_behaviour``. Both are built
from the dicts below so the two can never disagree.
"""

from __future__ import annotations

from typing import Any

CONN_TYPE = "vikingdb"
DEFAULT_CONN_ID = "vikingdb_default"

# Extra fields, in form order. "secret" ones are password fields (masked in the UI).
EXTRA_FIELDS: dict[str, dict[str, Any]] = {
    "region": {
        "label": "Region",
        "description": "Signing region, e.g. cn-beijing. Read off an "
        "api-vikingdb.vikingdb.{region}.volces.com host when empty.",
        "type": "string",
    },
    "scheme": {
        "label": "Scheme",
        "description": "https (default) or http (local server, private link).",
        "type": "string",
        "default": "https",
        "enum": ["https", "http"],
    },
    "api_key": {
        "label": "API Key",
        "description": "Alternative to Access Key / Secret Key: sent as 'Authorization: Bearer ...'.",
        "type": "string",
        "secret": True,
    },
    "session_token": {
        "label": "Session Token",
        "description": "Optional STS session token, sent (and signed) as X-Security-Token.",
        "type": "string",
        "secret": True,
    },
    "timeout": {
        "label": "Timeout (s)",
        "description": "Per-request timeout in seconds (default 30).",
        "type": "number",
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Retries of a request after a 5xx, a timeout or a dropped connection (default 5).",
        "type": "integer",
    },
    "verify": {
        "label": "Verify TLS",
        "description": "true (default), false, or the path of a CA bundle.",
        "type": "string",
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema"],
    "relabeling": {
        "host": "Host (or URL)",
        "login": "Access Key ID",
        "password": "Secret Access Key",
    },
    "placeholders": {
        "host": "api-vikingdb.vikingdb.cn-beijing.volces.com",
        "port": "443",
        "login": "AKLT...",
        "region": "cn-beijing",
        "scheme": "https",
        "timeout": "30",
        "max_retries": "5",
        "verify": "true",
    },
}


def provider_conn_fields() -> dict[str, Any]:
    """``conn-fields`` for the provider info (Airflow 3.2+)."""
    fields = {}
    for name, spec in EXTRA_FIELDS.items():
        schema: dict[str, Any] = {"type": [spec["type"], "null"]}
        if spec.get("secret"):
            schema["format"] = "password"
        if "enum" in spec:
            schema["enum"] = spec["enum"]
        if "default" in spec:
            schema["default"] = spec["default"]
        fields[name] = {"label": spec["label"], "description": spec["description"], "schema": schema}
    return fields


def provider_ui_field_behaviour() -> dict[str, Any]:
    """``ui-field-behaviour`` for the provider info (kebab-case keys)."""
    return {key.replace("_", "-"): value for key, value in UI_FIELD_BEHAVIOUR.items()}


def legacy_form_widgets() -> dict[str, Any]:
    """WTForms widgets for Airflow 3.1 (imported only when the UI asks)."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import IntegerField, PasswordField, StringField
    from wtforms.validators import Optional

    widgets = {}
    for name, spec in EXTRA_FIELDS.items():
        label = lazy_gettext(spec["label"])
        if spec.get("secret"):
            field = PasswordField(label, widget=BS3PasswordFieldWidget(), description=spec["description"])
        elif spec["type"] == "integer":
            field = IntegerField(
                label, widget=BS3TextFieldWidget(), validators=[Optional()], description=spec["description"]
            )
        else:
            field = StringField(label, widget=BS3TextFieldWidget(), description=spec["description"])
        widgets[name] = field
    return widgets
