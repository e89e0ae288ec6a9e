"""The log filter that keeps credentials out of the server's log lines
(`nodewall.server.redact`): what it removes, what it keeps, and that the access log's record
shape (five arguments) survives it."""

from __future__ import annotations

import logging

import pytest

from nodewall.server.redact import REDACTED, RedactCredentials, redact

TOKEN = "nw_" + "A1b2-C3d4_" * 4


@pytest.mark.parametrize("line, kept", [
    (f"/v1/node/n/policy?token={TOKEN}", "/v1/node/n/policy?token="),
    ("/v1/node/n/policy?version=abc&access_token=xyz&wait=30", "version=abc&access_token="),
    ("/v1/platform?api_key=secret1&x=1", "&x=1"),
    ("/v1/x?password=hunter2", "?password="),
    (f"/v1/{TOKEN}/policy", "/v1/nw_"),
    (f"/healthz?{TOKEN}", "/healthz?nw_"),
    ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer "),
])
def test_credentials_are_redacted(line: str, kept: str) -> None:
    out = redact(line)
    assert REDACTED in out and kept in out, out
    for secret in (TOKEN, TOKEN[3:], "xyz", "secret1", "hunter2", "abc.def-ghi"):
        assert secret not in out, out


def test_ordinary_urls_stay_readable() -> None:
    line = "/v1/node/pg-prod-1/policy?version=0a1b2c&wait=30"
    assert redact(line) == line


def test_the_access_record_keeps_its_shape() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/v1/p?token={TOKEN}", "1.1", 200),
                               None)
    assert RedactCredentials().filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5
    assert record.args[4] == 200
    assert TOKEN not in record.getMessage() and "token=<redacted>" in record.getMessage()
