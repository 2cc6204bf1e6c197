"""The request guards on their own: path rules, Range bounds, conditional headers, body limits, header escaping."""
from __future__ import annotations

import pytest

from weightvault.api.conditional import precondition_status, range_applies
from weightvault.api.errors import header_value
from weightvault.api.limits import body_limit
from weightvault.api.settings import ServerSettings
from weightvault.api.streaming import parse_range
from weightvault.errors import RangeNotSatisfiable
from weightvault.dedup.formats import safetensors
from weightvault.dedup.names import InvalidName, check_message, check_path, check_tree


@pytest.mark.parametrize("path, rule", [
    ("a\nb.txt", "control character"),
    ("a\x00b", "control character"),
    ("dir/\x7f", "control character"),
    ("x\ud800y", "control character"),
    ("a/" + "n" * 256, "over 255 bytes"),
    ("a/" + "é" * 128, "over 255 bytes"),  # 256 bytes in UTF-8, 128 characters
    ("/".join(["d" * 200] * 6), "limited to 1024 bytes"),
    ("a/../b", "'..'"),
    ("/etc/passwd", "relative path"),
    ("a\\b", "relative path"),
    (".git/config", ".git"),
])
def test_path_rules_say_which_rule(path, rule):
    with pytest.raises(InvalidName, match=rule if rule[0] != "'" else None):
        check_path(path)


def test_paths_at_the_limits_pass():
    check_path("a/" + "n" * 255)
    check_path("/".join(["d" * 100] * 10) + "/abcdefghijklmn")[:1024]
    check_path("模型/权重.safetensors")


def test_file_and_folder_of_one_name_clash():
    check_tree(["a/b", "a/c", "ab", "a.txt"])
    with pytest.raises(InvalidName, match="'a' is a file"):
        check_tree(["a", "a/b"])
    with pytest.raises(InvalidName, match="'x/y' is a file"):
        check_tree(["x/y/z/w", "x/y"])


def test_commit_messages():
    assert check_message("fine\n\nbody") == "fine\n\nbody"
    with pytest.raises(InvalidName, match="NUL"):
        check_message("a\x00b")
    with pytest.raises(InvalidName, match="limit"):
        check_message("m" * 70_000)


def test_range_numbers_of_any_length():
    huge = "9" * 5000
    with pytest.raises(RangeNotSatisfiable):
        parse_range(f"bytes={huge}-", 100)
    assert parse_range(f"bytes=10-{huge}", 100) == (10, 100)
    assert parse_range(f"bytes=-{huge}", 100) == (0, 100)
    assert parse_range("bytes=" + "0" * 5000 + "5-9", 100) == (5, 10)
    assert parse_range("bytes=0-0", 100) == (0, 1)


def test_conditional_headers():
    etag = '"abc"'
    assert precondition_status({}, etag, "GET") is None
    assert precondition_status({"if-none-match": '"abc"'}, etag, "GET") == 304
    assert precondition_status({"if-none-match": 'W/"abc", "x"'}, etag, "HEAD") == 304
    assert precondition_status({"if-none-match": "*"}, etag, "GET") == 304
    assert precondition_status({"if-none-match": '"old"'}, etag, "GET") is None
    assert precondition_status({"if-match": '"old"'}, etag, "GET") == 412
    assert precondition_status({"if-match": 'W/"abc"'}, etag, "GET") == 412  # If-Match compares strongly
    assert precondition_status({"if-match": '"x", "abc"'}, etag, "GET") is None
    assert precondition_status({"if-match": "*"}, etag, "GET") is None
    assert range_applies({}, etag)
    assert range_applies({"if-range": '"abc"'}, etag)
    assert not range_applies({"if-range": '"stale"'}, etag)
    assert not range_applies({"if-range": 'W/"abc"'}, etag)
    assert not range_applies({"if-range": "Wed, 21 Oct 2015 07:28:00 GMT"}, etag)


def test_body_limits_by_route_kind():
    s = ServerSettings(max_json_bytes=10, max_commit_bytes=20, max_part_bytes=30, max_upload_bytes=1000)
    assert body_limit(s, "POST", "/api/v1/repos", b"") == 10
    assert body_limit(s, "POST", "/api/repos/create", b"") == 10
    assert body_limit(s, "POST", "/api/models/o/n/commit/main", b"") == 20
    assert body_limit(s, "PUT", "/api/v1/uploads/ab/parts/1", b"") == 30
    assert body_limit(s, "PUT", "/api/v1/lfs/model/o/n/" + "a" * 64, b"size=77&expires=1") == 77
    assert body_limit(s, "PUT", "/api/v1/lfs/model/o/n/" + "a" * 64, b"size=5000") == 1000
    assert body_limit(s, "PUT", "/api/v1/lfs/model/o/n/" + "a" * 64, b"size=" + b"9" * 5000) == 0
    assert body_limit(s, "POST", "/v1/xorbs/default/abc", b"") == 30


def test_error_headers_are_ascii_whatever_the_name():
    for text in ("Entry '中文.txt' not found", "caf\xe9", "line\r\nX-Injected: 1", "\ud800"):
        value = header_value(text)
        value.encode("ascii")
        assert "\r" not in value and "\n" not in value
    assert header_value("plain 'a.txt'") == "plain 'a.txt'"


def test_deeply_nested_safetensors_header_is_refused_not_a_crash():
    head = b"[" * 100_000 + b"]" * 100_000
    data = len(head).to_bytes(8, "little") + head
    with pytest.raises(safetensors.SafetensorsError, match="nested"):
        safetensors.parse(data)


def test_tensor_names_the_catalog_cannot_hold_are_refused():
    import json
    for name in ("t" * 513, "a\x00b"):
        head = json.dumps({name: {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}).encode()
        with pytest.raises(safetensors.SafetensorsError, match="tensor name"):
            safetensors.parse(len(head).to_bytes(8, "little") + head + b"x")


def test_nul_in_urls_is_400_before_any_route():
    import asyncio

    from weightvault.api.limits import BodyLimit

    sent = []

    async def app(scope, receive, send):
        raise AssertionError("the app must not run")

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    mw = BodyLimit(app, ServerSettings())
    for raw, query in ((b"/api/v1/repos", b"kind=a%00b"), (b"/api/models/a%00/b", b"")):
        sent.clear()
        scope = {"type": "http", "method": "GET", "path": raw.decode(), "raw_path": raw, "query_string": query,
                 "headers": []}
        asyncio.run(mw(scope, receive, send))
        assert sent[0]["status"] == 400


def test_busy_gate_answers_503_with_retry_after_when_full():
    import asyncio

    from weightvault.errors import Busy
    from weightvault.api.limits import Gate

    async def scenario():
        gate = Gate(slots=1, wait=0.05)
        async with gate:
            with pytest.raises(Busy) as full:
                async with gate:
                    pass
        async with gate:  # the slot came back
            pass
        return full.value

    err = asyncio.run(scenario())
    from weightvault.api.errors import response

    answer = response(err)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
