"""Every hook test is also a leak test: nothing it printed or logged may hold a secret."""

import logging

import pytest

SK = "SK-local-secret-0123456789"
API_KEY = "KEY-local-api-key-0123"
SESSION_TOKEN = "STS-local-session-token-0123"
SECRETS = (SK, API_KEY, SESSION_TOKEN)


@pytest.fixture(autouse=True)
def no_secret_in_any_output(capfd, caplog):
    caplog.set_level(logging.DEBUG)
    yield
    out, err = capfd.readouterr()
    seen = "\n".join([out, err, caplog.text])
    leaked = [s for s in SECRETS if s in seen]
    assert not leaked, f"secret(s) leaked into log output: {leaked}"
