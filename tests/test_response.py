"""houweb.Response and the response builders (spec §9.1, §9.2, §9.3)."""

from __future__ import annotations

import datetime

import pytest
import pytest_twisted

import houweb
from houweb._response import content_disposition, guess_content_type

from .support import raw_request


def request_for(accept: str = "", host: str = "127.0.0.1:8008", path: str = "/p") -> houweb.Request:
    headers = [("Accept", accept)] if accept else []
    if host:
        headers.append(("Host", host))
    return houweb.Request(
        method="GET",
        path=path,
        target=path,
        header_lines=headers,
        local_address=("127.0.0.1", 8008),
        client_address=("127.0.0.1", 5000),
    )


def test_defaults_are_200_text_html():
    response = houweb.Response("abc")
    assert response.status() == 200
    assert response.headers() == {"Content-Type": "text/html"}
    assert response.contentLength() == 3
    assert response.statusLabel() == "200 OK"


def test_str_body_is_utf8_and_other_types_are_refused():
    assert houweb.Response("é").body() == b"\xc3\xa9"
    assert houweb.Response(bytearray(b"ab")).body() == b"ab"
    with pytest.raises(TypeError):
        houweb.Response(123)


@pytest.mark.parametrize("status", [99, 600])
def test_status_out_of_range_is_refused(status):
    with pytest.raises(ValueError):
        houweb.Response("x", status=status)


def test_set_header_replaces_any_case_and_headers_is_a_copy():
    response = houweb.Response("x")
    response.setHeader("X-A", "1")
    response.setHeader("x-a", 2)
    headers = response.headers()
    assert headers["x-a"] == "2" and "X-A" not in headers
    headers["x-a"] = "changed"
    assert response.headers()["x-a"] == "2"


def test_add_header_repeats_and_headers_joins():
    response = houweb.Response("x")
    response.addHeader("Link", "<a>")
    response.addHeader("Link", "<b>")
    assert response.headers()["Link"] == "<a>, <b>"


def test_header_values_with_newlines_are_refused():
    with pytest.raises(ValueError):
        houweb.Response("x").setHeader("X-A", "1\r\nSet-Cookie: evil=1")


def test_content_type_header_overrides_content_type_argument():
    response = houweb.Response("x", content_type="text/plain")
    response.setHeader("content-type", "application/json")
    assert response.headers() == {"content-type": "application/json"}


def test_status_label_uses_houwebs_phrases():
    assert houweb.Response("x", status=422).statusLabel() == "422 Unprocessable Entity"
    assert houweb.Response("x", status=413).statusLabel() == "413 Request Entity Too Large"
    assert houweb.Response("x", status=599).statusLabel() == "599 Unknown Status"


def test_set_body_replaces_body_and_type():
    response = houweb.Response("a.txt", is_file_name=True)
    response.setBody("new", "text/plain")
    assert response.body() == b"new" and response.contentType() == "text/plain"
    assert response.filePath() is None


def test_set_cookie_formats():
    response = houweb.Response("x")
    response.setCookie("token", "abc")
    response.setCookie("token", "abc", max_age=3600, secure=True, same_site="Strict")
    when = datetime.datetime(2030, 1, 2, 3, 4, 5)
    response.setCookie("e", "1", expires=when, http_only=False, same_site=None, path=None)
    lines = [v for n, v in response.headerLines() if n == "Set-Cookie"]
    assert lines == [
        "token=abc; Path=/; HttpOnly; SameSite=Lax",
        "token=abc; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=Strict",
        "e=1; Expires=Wed, 02 Jan 2030 03:04:05 GMT",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(value="a b"),
        dict(value='a"'),
        dict(value="é"),
        dict(same_site="None"),
        dict(same_site="Odd"),
    ],
)
def test_bad_cookies_are_refused(kwargs):
    arguments = dict(name="n", value="v")
    arguments.update(kwargs)
    with pytest.raises(ValueError):
        houweb.Response("x").setCookie(**arguments)


def test_is_chunked():
    response = houweb.Response("x")
    assert not response.isChunked()
    response.setHeader("Transfer-Encoding", "Chunked")
    assert response.isChunked()


def test_error_response_json_when_accepted():
    response = houweb.errorResponse(request_for("text/html, Application/JSON;q=0.5"), "bad", 422)
    assert response.body() == b'{"error": "bad"}'
    assert response.contentType() == "application/json"
    assert response.status() == 422
    nested = houweb.errorResponse(request_for("application/json"), {"field": "x"}, 400)
    assert nested.body() == b'{"error": {"field": "x"}}'


def test_error_response_html_template():
    response = houweb.errorResponse(request_for(), "bad", 422)
    assert response.body() == (
        b'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>422 Unprocessable Entity</title>'
        b"</head><body><h1>bad</h1></body></html>\n"
    )
    plain = houweb.errorResponse(request_for(), "<b>", use_heading=False)
    assert b"<p>&lt;b&gt;</p>" in plain.body() and plain.status() == 500


def test_not_found_names_the_path():
    response = houweb.notFoundResponse(request_for("application/json", path="/nope"))
    assert response.status() == 404
    assert response.body() == b'{"error": "Not found: /nope"}'


def test_redirects():
    request = request_for()
    temporary = houweb.redirect(request, "/new")
    assert temporary.status() == 302
    assert temporary.headers()["Location"] == "http://127.0.0.1:8008/new"
    assert houweb.redirect(request, "/new", permanent=True).status() == 301
    assert houweb.redirect(request, "https://e.test/x").headers()["Location"] == "https://e.test/x"
    assert (
        houweb.redirect(request, "/a b/é").headers()["Location"]
        == "http://127.0.0.1:8008/a%20b/%C3%A9"
    )
    assert houweb.redirect(request_for(host=""), "/new").headers()["Location"] == "/new"


def test_file_response_guesses_types():
    assert houweb.fileResponse("x.png").contentType() == "image/png"
    assert houweb.fileResponse("x.png", content_type="text/plain").contentType() == "text/plain"
    assert houweb.fileResponse("x.bgeo").contentType() == "application/octet-stream"
    assert guess_content_type("scene.tar.gz") == "application/octet-stream"


def test_download_names_follow_rfc_6266():
    assert content_disposition("report.csv") == 'attachment; filename="report.csv"'
    assert content_disposition("résumé.pdf") == (
        "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
    )
    assert content_disposition('a"b\\c') == 'attachment; filename="a\\"b\\\\c"'


@pytest_twisted.ensureDeferred
async def test_on_the_wire_defaults_and_422_status_line(serve):
    houweb.urlHandler("/abc")(lambda r: houweb.Response("abc"))
    houweb.urlHandler("/422")(lambda r: houweb.Response("no", status=422))
    port = (await serve()).port_numbers()[0]
    raw = await raw_request(
        port, b"GET /abc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert b"\r\nContent-Type: text/html\r\n" in raw
    assert b"\r\nContent-Length: 3\r\n" in raw
    raw = await raw_request(
        port, b"GET /422 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 422 Unprocessable Entity\r\n")


@pytest_twisted.ensureDeferred
async def test_chunked_response_has_no_content_length(serve):
    @houweb.urlHandler("/c")
    def chunked(request):
        response = houweb.Response("chunky")
        response.setHeader("Transfer-Encoding", "chunked")
        return response

    port = (await serve()).port_numbers()[0]
    raw = await raw_request(
        port, b"GET /c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    assert body == b"6\r\nchunky\r\n0\r\n\r\n"


@pytest_twisted.ensureDeferred
async def test_two_cookies_are_two_set_cookie_lines(serve, client):
    @houweb.urlHandler("/cookies")
    def cookies(request):
        response = houweb.Response("x")
        response.setCookie("a", "1")
        response.setCookie("b", "2")
        return response

    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/cookies")
    assert reply.header_list("Set-Cookie") == [
        "a=1; Path=/; HttpOnly; SameSite=Lax",
        "b=2; Path=/; HttpOnly; SameSite=Lax",
    ]


@pytest_twisted.ensureDeferred
async def test_redirect_on_the_wire(serve, client):
    houweb.urlHandler("/old")(lambda r: houweb.redirect(r, "/new"))
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/old", allow_redirects=False)
    assert reply.status == 302
    assert reply.header("Location") == f"http://127.0.0.1:{port}/new"


@pytest_twisted.ensureDeferred
async def test_file_response_body_is_streamed_whole(serve, client, tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB, more than one producer chunk
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    houweb.urlHandler("/file")(lambda request: houweb.fileResponse(str(path)))
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/file")
    assert reply.status == 200 and reply.body == data
    assert reply.header("Content-Type") == "application/octet-stream"
