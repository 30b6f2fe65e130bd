"""Connection parsing: what a user types in the connection form, and the errors they get."""

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
