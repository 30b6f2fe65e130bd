"""The ``vikingdb`` Airflow connection: its form fields, and its parsing into a checked config.

One definition of the form: Airflow 3.2+ reads it declaratively from the provider
info (``conn-fields`` and ``ui-field-behaviour``); Airflow 3.1 calls the hook's
``get_connection_form_widgets`` / ``get_ui_field_behaviour``. Both are built from
the dicts below so the two can never disagree.

``parse_connection`` is pure: every mistake is refused before anything is sent,
with a message naming the field and the fix, and never echoing a secret.
``config_from_connection`` reads an Airflow connection object (and registers only
the secrets with Airflow's masker).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_vikingdb.exceptions import VikingDBConfigError

CONN_TYPE = "vikingdb"
DEFAULT_CONN_ID = "vikingdb_default"

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------- the parsed config

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 3600.0
DEFAULT_MAX_RETRIES = 5
MAX_RETRIES = 100

_PUBLIC_HOST = re.compile(r"^api-vikingdb\.vikingdb\.(?P<region>[a-z0-9-]+)\.i?volces\.com$")
_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")


@dataclass(frozen=True)
class VikingDBConnectionConfig:
    """What the hook needs from the Airflow connection, parsed and checked once.

    Secrets are kept out of ``repr`` so that logging the config leaks nothing.
    """

    base_url: str
    host_header: str
    region: str
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    verify: bool | str = True
    #: the credential fields that had whitespace around them, removed (their names, never values)
    trimmed: tuple[str, ...] = ()

    @property
    def auth_mode(self) -> str:
        return "api_key" if self.api_key else "ak_sk"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret of the connection: scrubbed from anything quoted in an error."""
        return tuple(s for s in (self.secret_key, self.api_key, self.session_token) if s)


def _is_public_host(hostname: str) -> bool:
    name = hostname.lower().rstrip(".")
    return name == "volces.com" or (name.endswith(".volces.com") and not name.endswith(".ivolces.com"))


def parse_connection(
    *,
    conn_id: str,
    host: str | None,
    port: Any,
    login: str | None,
    password: str | None,
    extra: Mapping[str, Any],
) -> VikingDBConnectionConfig:
    """Check a ``vikingdb`` connection's fields; every error names the field and the fix."""
    where = f"Airflow connection {conn_id!r}"
    host = (host or "").strip()
    if not host:
        raise VikingDBConfigError(
            f"{where} has no host: set it to the data-plane host, e.g. "
            "api-vikingdb.vikingdb.cn-beijing.volces.com, or a URL such as http://127.0.0.1:8765"
        )

    scheme_extra = _text(extra.get("scheme"))
    url_port: int | None
    if "://" in host:
        url = urlsplit(host)
        scheme = url.scheme.lower()
        hostname, url_port = _host_and_port(url, host, where)
        if url.path not in ("", "/") or url.query or url.fragment:
            raise VikingDBConfigError(f"{where}: host {host!r} has a path; give only scheme://host[:port]")
        if scheme_extra and scheme_extra.lower() != scheme:
            raise VikingDBConfigError(
                f"{where}: host URL says {scheme!r} but extra 'scheme' says {scheme_extra!r}; remove one"
            )
    else:
        scheme = (scheme_extra or "https").lower()
        if host.count(":") > 1 and not host.startswith("["):  # a bare IPv6 literal
            hostname, url_port = host, None
        else:
            # host[:port] without a scheme, as the official SDK takes it
            hostname, url_port = _host_and_port(urlsplit(f"//{host}"), host, where)
            if "/" in host:
                raise VikingDBConfigError(f"{where}: host {host!r} has a path; give only host[:port]")
    if scheme not in ("https", "http"):
        raise VikingDBConfigError(f"{where}: extra 'scheme' must be 'https' or 'http', got {scheme!r}")
    if not hostname:
        raise VikingDBConfigError(f"{where}: host {host!r} has no host name")
    if scheme == "http" and _is_public_host(hostname):
        # vikingdb-api.md section 5: private-link hosts (*.ivolces.com) speak http, public ones https
        raise VikingDBConfigError(
            f"{where}: {hostname} is a public VikingDB endpoint, which speaks https: plain http would "
            "send every request (and an API key or STS token) unencrypted over the internet. Use https "
            "(the default: remove the http scheme), or the private-link host (…ivolces.com), which "
            "speaks http"
        )

    if port is not None and port != "":
        if isinstance(port, bool):
            raise VikingDBConfigError(f"{where}: field 'port' must be a number, got {port!r}")
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise VikingDBConfigError(f"{where}: field 'port' must be a number, got {port!r}") from None
        if not 0 < port < 65536:
            raise VikingDBConfigError(f"{where}: field 'port' must be 1..65535, got {port}")
        if url_port is not None and port != url_port:
            raise VikingDBConfigError(
                f"{where}: host {host!r} has port {url_port} but field 'port' is {port}"
            )
    else:
        port = url_port
    default_port = 443 if scheme == "https" else 80
    name = f"[{hostname}]" if ":" in hostname else hostname  # an IPv6 literal
    netloc = name if port in (None, default_port) else f"{name}:{port}"

    region = _text(extra.get("region"))
    if not region:
        match = _PUBLIC_HOST.match(hostname)
        if not match:
            raise VikingDBConfigError(
                f"{where}: cannot tell the signing region from host {hostname!r}; set extra 'region' "
                "(e.g. cn-beijing, cn-shanghai, cn-guangzhou, ap-southeast-1)"
            )
        region = match.group("region")
    if not _REGION.match(region):
        raise VikingDBConfigError(
            f"{where}: extra 'region' {region!r} is not a region name such as cn-beijing or ap-southeast-1"
        )

    # No key, secret or token of Volcengine holds whitespace. Around a value it is a copy-paste
    # accident (a trailing newline from a file or `echo`): it is removed, and the config names
    # the fields, so that reading the connection warns. Inside a value it is a wrong value (two pasted
    # together, a wrapped token) that would end an HTTP header or sign every request wrongly:
    # refused. No message echoes the value.
    trimmed: list[str] = []
    login = _credential(login, "Access Key ID (login)", where, trimmed)
    password = _credential(password, "Secret Access Key (password)", where, trimmed)
    api_key = _credential(extra.get("api_key"), "extra 'api_key'", where, trimmed)
    session_token = _credential(extra.get("session_token"), "extra 'session_token'", where, trimmed)
    if not api_key and not (login and password):
        missing = "Access Key ID (login)" if not login else "Secret Access Key (password)"
        raise VikingDBConfigError(
            f"{where} has no usable credentials: {missing} is empty. Set login and password to the "
            "Access Key ID and Secret Access Key, or set extra 'api_key'"
        )

    return VikingDBConnectionConfig(
        base_url=f"{scheme}://{netloc}",
        host_header=netloc,
        region=region,
        access_key=login,
        secret_key=password if not api_key else None,
        api_key=api_key,
        session_token=session_token,
        timeout=_timeout(extra.get("timeout"), where),
        max_retries=_max_retries(extra.get("max_retries"), where),
        verify=_verify(extra.get("verify")),
        trimmed=tuple(trimmed),
    )


def read_extra(extra: Any, conn_id: str) -> dict[str, Any]:
    """The connection's extra as a dict, parsed here rather than through ``extra_dejson``.

    ``extra_dejson`` registers *every* extra value with the secret masker (and warns
    "too short" about values such as ``http``); only the secrets should be masked.
    """
    if extra is None or extra == "":
        return {}
    if isinstance(extra, Mapping):
        return dict(extra)
    try:
        value = json.loads(extra)
    except ValueError:
        raise VikingDBConfigError(
            f"Airflow connection {conn_id!r}: its extra is not JSON; give a JSON object such as "
            '{"region": "cn-beijing", "scheme": "http"}'
        ) from None
    if not isinstance(value, dict):
        raise VikingDBConfigError(f"Airflow connection {conn_id!r}: its extra must be a JSON object")
    return value


def config_from_connection(conn: Any, conn_id: str) -> VikingDBConnectionConfig:
    """Parse an Airflow connection object; only its secrets go to Airflow's masker.

    Whitespace removed from around a credential is logged as a warning (naming the field,
    never the value): the connection works, but its stored value should be fixed.
    """
    from airflow_provider_vikingdb._compat import mask_secret

    extra = read_extra(conn.extra, conn_id)
    for secret in (conn.password, extra.get("api_key"), extra.get("session_token")):
        if secret and isinstance(secret, str) and secret.strip():
            mask_secret(secret.strip())  # as it is sent or signed with
    config = parse_connection(
        conn_id=conn_id,
        host=conn.host,
        port=conn.port,
        login=conn.login,
        password=conn.password,
        extra=extra,
    )
    if config.trimmed:
        log.warning(
            "Airflow connection %r: removed the whitespace (e.g. a trailing line break) around its %s; "
            "the connection works, but remove it from the stored value",
            conn_id,
            " and ".join(config.trimmed),
        )
    return config


def _host_and_port(url: Any, host: str, where: str) -> tuple[str, int | None]:
    try:
        return url.hostname or "", url.port
    except ValueError:
        raise VikingDBConfigError(
            f"{where}: host {host!r} has a port that is not a number from 1 to 65535"
        ) from None


def _credential(value: Any, label: str, where: str, trimmed: list[str]) -> str | None:
    """A credential without the whitespace around it (noted in ``trimmed``); whitespace inside is refused."""
    if value is None:
        return None
    text = str(value)
    stripped = text.strip()
    if any(character.isspace() for character in stripped):
        kind = "a line break" if "\n" in stripped or "\r" in stripped else "a space or tab"
        raise VikingDBConfigError(
            f"{where}: the {label} contains {kind} inside it, which no credential holds; "
            "paste exactly the one value"
        )
    if stripped and stripped != text:
        trimmed.append(label)
    return stripped or None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _timeout(value: Any, where: str) -> float:
    if value is None or value == "":
        return DEFAULT_TIMEOUT
    number: float | None = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None or not math.isfinite(number) or not 0 < number <= MAX_TIMEOUT:
        raise VikingDBConfigError(
            f"{where}: extra 'timeout' must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, "
            f"got {value!r}"
        )
    return number


def _max_retries(value: Any, where: str) -> int:
    if value is None or value == "":
        return DEFAULT_MAX_RETRIES
    number: int | None = None
    if not isinstance(value, bool):
        try:
            as_float = float(value)
            if math.isfinite(as_float) and as_float == int(as_float):
                number = int(as_float)
        except (TypeError, ValueError, OverflowError):
            number = None
    if number is None or not 0 <= number <= MAX_RETRIES:
        raise VikingDBConfigError(
            f"{where}: extra 'max_retries' must be a whole number from 0 to {MAX_RETRIES}, got {value!r}"
        )
    return number


def _verify(value: Any) -> bool | str:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    return text  # a CA bundle path; the transport reports a missing file clearly
