"""Connection parsing: what a user types in the connection form, and the errors they get."""

import json

import pytest

from airflow_provider_vikingdb.exceptions import VikingDBConfigError
from airflow_provider_vikingdb.hooks.vikingdb import parse_connection


def parse(host="127.0.0.1", port=None, login="AK", password="SK", **extra):
    return parse_connection(conn_id="c", host=host, port=port, login=login, password=password, extra=extra)


def test_public_host_defaults_to_https_and_reads_the_region_off_the_name():
    cfg = parse(host="api-vikingdb.vikingdb.cn-shanghai.volces.com")
    assert cfg.base_url == "https://api-vikingdb.vikingdb.cn-shanghai.volces.com"
    assert cfg.region == "cn-shanghai"
    assert cfg.host_header == "api-vikingdb.vikingdb.cn-shanghai.volces.com"
    assert cfg.verify is True and cfg.timeout == 30 and cfg.max_retries == 5


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        ("api-vikingdb.vikingdb.cn-beijing.volces.com", {"scheme": "http", "api_key": "key-0123456789"}),
        ("http://api-vikingdb.vikingdb.cn-beijing.volces.com", {}),
        ("http://API-VIKINGDB.vikingdb.ap-southeast-1.volces.com.", {"region": "ap-southeast-1"}),
    ],
)
def test_plain_http_to_a_public_host_is_refused(host, extra):
    with pytest.raises(VikingDBConfigError, match=r"public VikingDB endpoint, which speaks https") as info:
        parse(host=host, **extra)
    assert "key-0123456789" not in str(info.value) and "private-link host" in str(info.value)


def test_plain_http_to_a_private_link_host_or_a_local_one_is_fine():
    private = parse(host="api-vikingdb.vikingdb.cn-beijing.ivolces.com", scheme="http")
    assert (
        private.base_url == "http://api-vikingdb.vikingdb.cn-beijing.ivolces.com"
        and private.region == "cn-beijing"
    )
    assert parse(host="http://10.0.0.7:8080", region="cn-beijing").base_url == "http://10.0.0.7:8080"


def test_local_server_connection_from_the_design_doc():
    cfg = parse(host="127.0.0.1", port=8765, region="cn-beijing", scheme="http")
    assert cfg.base_url == "http://127.0.0.1:8765"
    assert cfg.host_header == "127.0.0.1:8765"
    assert cfg.region == "cn-beijing"


def test_url_as_host_gives_scheme_and_port():
    cfg = parse(host="http://127.0.0.1:8765", region="cn-beijing")
    assert cfg.base_url == "http://127.0.0.1:8765"


def test_default_port_is_left_out_of_the_host_header():
    cfg = parse(host="api-vikingdb.vikingdb.cn-beijing.volces.com", port=443)
    assert cfg.host_header == "api-vikingdb.vikingdb.cn-beijing.volces.com"


def test_extras_from_a_uri_arrive_as_text_and_are_converted():
    cfg = parse(region="cn-beijing", scheme="http", timeout="2.5", max_retries="3", verify="false")
    assert (cfg.timeout, cfg.max_retries, cfg.verify) == (2.5, 3, False)
    assert parse(region="cn-beijing", verify="/etc/ca.pem").verify == "/etc/ca.pem"


def test_api_key_alone_is_enough_and_wins_over_ak_sk():
    cfg = parse(login=None, password=None, region="cn-beijing", api_key="KEY")
    assert cfg.auth_mode == "api_key"
    assert parse(region="cn-beijing", api_key="KEY").secret_key is None


def test_secrets_are_not_in_the_repr():
    cfg = parse(password="TOPSECRET-SK", region="cn-beijing", session_token="TOPSECRET-TOKEN")
    assert "TOPSECRET" not in repr(cfg)
    cfg = parse(login=None, password=None, region="cn-beijing", api_key="TOPSECRET-KEY")
    assert "TOPSECRET" not in repr(cfg)


@pytest.mark.parametrize(
    ("kwargs", "field_named"),
    [
        ({"login": None, "password": None}, "Access Key ID (login)"),
        ({"password": ""}, "Secret Access Key (password)"),
        ({"host": ""}, "no host"),
        ({"host": "example.com"}, "extra 'region'"),
        ({"region": "Beijing!"}, "extra 'region'"),
        ({"scheme": "ftp"}, "extra 'scheme'"),
        ({"host": "http://127.0.0.1:1", "scheme": "https"}, "extra 'scheme'"),
        ({"host": "http://127.0.0.1:1", "port": 2}, "field 'port'"),
        ({"port": "eighty"}, "field 'port'"),
        ({"timeout": "soon"}, "extra 'timeout'"),
        ({"timeout": 0}, "extra 'timeout'"),
        ({"max_retries": -1}, "extra 'max_retries'"),
        ({"max_retries": 1.5}, "extra 'max_retries'"),
        ({"host": "http://h/api"}, "path"),
    ],
)
def test_errors_name_the_field(kwargs, field_named):
    kwargs.setdefault("region", "cn-beijing")
    if kwargs["region"] is None:
        del kwargs["region"]
    if kwargs.get("host") == "example.com":
        del kwargs["region"]
    with pytest.raises(VikingDBConfigError) as info:
        parse(**kwargs)
    assert field_named in str(info.value)
    assert "'c'" in str(info.value)  # and the connection id


@pytest.mark.parametrize(
    ("extra", "field_named"),
    [
        ({"timeout": 1e12}, "extra 'timeout'"),
        ({"timeout": "inf"}, "extra 'timeout'"),
        ({"timeout": "nan"}, "extra 'timeout'"),
        ({"timeout": 3601}, "extra 'timeout'"),
        ({"timeout": True}, "extra 'timeout'"),
        ({"max_retries": "inf"}, "extra 'max_retries'"),
        ({"max_retries": 1e9}, "extra 'max_retries'"),
        ({"max_retries": 101}, "extra 'max_retries'"),
        ({"max_retries": "nan"}, "extra 'max_retries'"),
    ],
)
def test_timeouts_and_retry_budgets_out_of_range_are_refused(extra, field_named):
    with pytest.raises(VikingDBConfigError) as info:
        parse(region="cn-beijing", **extra)
    assert field_named in str(info.value) and "'c'" in str(info.value)


def test_limits_of_the_ranges_are_accepted():
    cfg = parse(region="cn-beijing", timeout=3600, max_retries=100)
    assert (cfg.timeout, cfg.max_retries) == (3600, 100)
    assert parse(region="cn-beijing", max_retries="0").max_retries == 0


@pytest.mark.parametrize(
    ("host", "scheme", "base_url"),
    [
        ("127.0.0.1:8765", "http", "http://127.0.0.1:8765"),
        ("127.0.0.1:8765", None, "https://127.0.0.1:8765"),
        (
            "api-vikingdb.vikingdb.cn-beijing.volces.com:443",
            None,
            "https://api-vikingdb.vikingdb.cn-beijing.volces.com",
        ),
        ("[::1]:8765", "http", "http://[::1]:8765"),
        ("::1", "http", "http://[::1]"),
    ],
)
def test_host_and_port_without_a_scheme_work_as_the_official_sdk_takes_them(host, scheme, base_url):
    extra = {"region": "cn-beijing"}
    if scheme:
        extra["scheme"] = scheme
    assert parse(host=host, **extra).base_url == base_url


def test_host_port_that_is_not_a_number_names_the_host():
    with pytest.raises(VikingDBConfigError, match="has a port that is not a number"):
        parse(host="127.0.0.1:http", region="cn-beijing")


CREDENTIALS = [
    ("login", "Access Key ID (login)"),
    ("password", "Secret Access Key (password)"),
    ("api_key", "extra 'api_key'"),
    ("session_token", "extra 'session_token'"),
]


def parse_with(field, value):
    return parse(region="cn-beijing", **{field: value})  # login/password, or an extra


@pytest.mark.parametrize(("field", "label"), CREDENTIALS)
@pytest.mark.parametrize(
    "pasted", ["SECRET-VALUE\n", "SECRET-VALUE\r\n", " SECRET-VALUE", "\tSECRET-VALUE \n"]
)
def test_whitespace_around_a_credential_is_removed_and_the_field_named(field, label, pasted):
    # A trailing line break is the usual copy-paste accident (a file, `echo`, a secret store);
    # no Volcengine key, secret or token holds whitespace, so the value without it is the one meant.
    cfg = parse_with(field, pasted)
    used = {"login": cfg.access_key, "password": cfg.secret_key, "api_key": cfg.api_key}
    used["session_token"] = cfg.session_token
    assert used[field] == "SECRET-VALUE"
    assert cfg.trimmed == (label,)
    if field != "login":  # the Access Key ID is not a secret; the others stay out of the repr
        assert "SECRET" not in repr(cfg)
    assert parse_with(field, "SECRET-VALUE").trimmed == ()


@pytest.mark.parametrize(("field", "label"), CREDENTIALS)
@pytest.mark.parametrize(
    ("pasted", "kind"),
    [
        ("SECRET\nVALUE", "a line break"),
        ("SECRET\r\nVALUE\n", "a line break"),
        ("SECRET VALUE", "a space or tab"),
        ("SECRET\tVALUE", "a space or tab"),
    ],
)
def test_whitespace_inside_a_credential_is_refused_without_echoing_it(field, label, pasted, kind):
    with pytest.raises(VikingDBConfigError) as info:
        parse_with(field, pasted)
    assert f"'c': the {label} contains {kind} inside it" in str(info.value)
    assert "SECRET" not in str(info.value) and "VALUE" not in str(info.value)


def test_config_mistakes_send_nothing(vikingdb_server, monkeypatch):
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    for extra in ({"timeout": "inf"}, {"max_retries": 1e9}):
        conn = json.loads(vikingdb_server.connection_json())
        conn["extra"].update(extra)
        monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
        with pytest.raises(VikingDBConfigError):
            VikingDBHook().delete(["a"], collection_name="test_coll")
    conn = json.loads(vikingdb_server.connection_json())
    conn["password"] = f"{conn['password']}\n{conn['password']}"  # two pasted together
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    with pytest.raises(VikingDBConfigError, match="password"):
        VikingDBHook().delete(["a"], collection_name="test_coll")
    assert vikingdb_server.requests == []


def test_config_error_is_a_vikingdb_error_and_a_value_error():
    from airflow_provider_vikingdb.exceptions import VikingDBError

    with pytest.raises(VikingDBConfigError) as info:
        parse(host="")
    assert isinstance(info.value, VikingDBError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("Airflow connection 'c' has no host")


def test_a_trailing_line_break_still_signs_right_and_the_warning_names_only_the_field(
    vikingdb_server_factory, monkeypatch, caplog
):
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    secret = "SK-local-secret-0123456789"
    server = vikingdb_server_factory(collections=("test_coll",), sk=secret)
    server.load("test_coll", [{"id": "a"}])
    conn = json.loads(server.connection_json())
    conn["password"] += "\n"
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    VikingDBHook().delete(["a"], collection_name="test_coll")
    assert server.records("test_coll") == {} and [r.auth_ok for r in server.requests] == [True]
    (warning,) = [r.getMessage() for r in caplog.records if "whitespace" in r.getMessage()]
    assert warning == (  # as docs/connection.md quotes it
        "Airflow connection 'vikingdb_default': removed the whitespace (e.g. a trailing line break) "
        "around its Secret Access Key (password); the connection works, but remove it from the stored value"
    )


def test_a_connection_that_is_not_defined_says_where_to_define_it(monkeypatch):
    import asyncio

    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    monkeypatch.delenv("AIRFLOW_CONN_VIKINGDB_NOWHERE", raising=False)
    for read in (lambda h: h.config, lambda h: asyncio.run(h.aconfig())):
        with pytest.raises(VikingDBConfigError) as info:
            read(VikingDBHook("vikingdb_nowhere"))
        text = str(info.value)
        assert "the Airflow connection 'vikingdb_nowhere' is not defined" in text
        assert "AIRFLOW_CONN_VIKINGDB_NOWHERE" in text and "Admin > Connections" in text
