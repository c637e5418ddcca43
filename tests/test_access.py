"""The access log (houweb/_access.py): on for the programs, off for run()."""

from __future__ import annotations

import json
import os
import re

import pytest
import pytest_twisted

import houweb
from houweb.__main__ import parse

from .children import Child, app, get
from .conftest import messages
from .support import APPS, ServerProcess, raw_request

TAP_APP = app("tap_app.py")
#: A Common Log Format line: host ident user [time] "request" status size.
CLF = r'127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET PATH HTTP/1\.1" (\d+) (\d+|-)'


def clf(path: str) -> str:
    """:returns: the pattern of an access line for ``GET path`` (a regex)."""
    return CLF.replace("PATH", path)


def access_events(events):
    return [e for e in events if e.get("log_namespace") == "houweb.access"]


@pytest_twisted.ensureDeferred
async def test_access_log_writes_one_common_log_format_line_per_request(serve, client, logged):
    @houweb.urlHandler("/hello")
    def hello(request):
        return "hello"

    server = await serve(access_log=True)
    port = server.port_numbers()[0]
    await client.get(port, "/hello?x=1", headers={"User-Agent": "probe/1"})
    await client.get(port, "/missing")
    lines = messages(access_events(logged)).splitlines()
    assert re.fullmatch(clf(r"/hello\?x=1"), lines[0]), lines
    assert re.fullmatch(clf("/missing"), lines[1]).group(1) == "404"
    first = access_events(logged)[0]
    assert (first["status"], first["size"], first["user_agent"]) == (200, 5, "probe/1")
    assert first["duration_ms"] >= 0


@pytest_twisted.ensureDeferred
async def test_no_access_log_unless_asked_for(serve, client, logged):
    @houweb.urlHandler("/hello")
    def hello(request):
        return "hello"

    server = await serve()
    assert server.site.houweb_on_finish == []  # no Deferred per request either
    reply = await client.get(server.port_numbers()[0], "/hello")
    assert reply.status == 200
    assert access_events(logged) == []


def test_the_programs_log_access_by_default_and_can_be_told_not_to():
    assert parse([]).run_arguments()["access_log"] is True
    assert parse(["--access-log"]).run_arguments()["access_log"] is True
    assert parse(["--no-access-log"]).run_arguments()["access_log"] is False
    with pytest.raises(SystemExit):
        parse(["--access-log", "--no-access-log"])


def test_python_m_houweb_logs_access_lines():
    with Child.houweb(f"--app={TAP_APP}", "--port=0") as child:
        port = child.port()
        get(port, "/hello")
        assert child.wait_for(clf("/hello")).group(1) == "200"


def test_python_m_houweb_no_access_log_logs_none():
    with Child.houweb(f"--app={TAP_APP}", "--port=0", "--no-access-log") as child:
        port = child.port()
        get(port, "/hello")
        get(port, "/stop")
        assert child.wait() == 0
    assert '"GET /hello' not in child.output


def test_twistd_houweb_logs_access_lines():
    with Child.twistd("-n", "--pidfile=", "houweb", f"--app={TAP_APP}", "--port=0") as child:
        port = child.port()
        get(port, "/hello")
        found = child.wait_for(r"\[houweb\.access#info\] " + clf("/hello"))
        assert found.group(1) == "200"


def test_access_log_as_json():
    with Child.houweb(f"--app={TAP_APP}", "--port=0", "--log-format=json") as child:
        port = int(child.wait_for(r"listening on http://127.0.0.1:(\d+)/").group(1))
        get(port, "/hello")
        line = child.wait_for(r'"log_namespace": "houweb.access"').string
    event = json.loads(line)
    assert (event["method"], event["target"], event["status"]) == ("GET", "/hello", 200)
    assert re.fullmatch(clf("/hello"), event["text"])


def run_logging_app(*args: str) -> str:
    child = ServerProcess(os.path.join(APPS, "logging_app.py"), *args)
    try:
        return child.output(timeout=30)
    finally:
        child.kill()


def test_embedded_run_logs_no_access_by_default():
    output = run_logging_app()
    assert "DONE" in output
    assert "houweb.access" not in output


def test_embedded_run_access_log_goes_to_the_houweb_access_logger():
    output = run_logging_app("--access-log")
    assert re.search(r"^PYLOG houweb\.access INFO " + clf("/hello"), output, re.M), output
    assert re.search(r"^PYLOG houweb\.access INFO " + clf("/boom"), output, re.M)


@pytest_twisted.ensureDeferred
async def test_requests_refused_when_their_headers_arrived_are_logged_too(serve, client, logged):
    ran = []

    @houweb.urlHandler("/secret")
    def secret(request):
        ran.append(request.path())
        return "secret"

    port = (await serve(access_log=True, token="s3cret")).port_numbers()[0]
    refused = await client.get(port, "/secret?x=1")
    assert refused.status == 401 and ran == []
    (line,) = messages(access_events(logged)).splitlines()
    found = re.fullmatch(clf(r"/secret\?x=1"), line)
    assert found and found.group(1) == "401" and int(found.group(2)) > 0, line


@pytest_twisted.ensureDeferred
async def test_a_target_cannot_forge_fields_or_write_control_characters_into_the_line(
    serve, logged
):
    # A target may hold '"' (Twisted takes it), DEL and C1 controls (refused
    # by houweb with 400, yet logged): written raw, '"' ends the request
    # field early (a reader of the line sees a forged status and size) and
    # the controls reach the operator's terminal. nginx writes them as \xHH.
    port = (await serve(access_log=True)).port_numbers()[0]
    for target in (b'/x"_200_1_"', b"/y\x7f\x9b[2J\\"):
        answer = await raw_request(
            port, b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 ")
    forged, controls = messages(access_events(logged)).splitlines()
    assert re.fullmatch(clf(r"/x\\x22_200_1_\\x22"), forged), forged
    assert re.fullmatch(clf(r"/y\\x7F\\x9B\[2J\\x5C"), controls), controls
    assert access_events(logged)[0]["target"] == '/x"_200_1_"'  # the field as received


@pytest_twisted.ensureDeferred
async def test_debug_modes_request_line_escapes_the_target_too(serve, logged):
    port = (await serve(debug=True)).port_numbers()[0]
    await raw_request(
        port, b'GET /y\x7f\x9b[2J" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
    )
    (line,) = [m for m in messages(logged).splitlines() if m.startswith('"GET /y')]
    assert line.startswith('"GET /y\\x7F\\x9B[2J\\x22" 400 '), line
