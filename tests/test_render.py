"""File responses on the wire: fileResponse and Response(is_file_name=True) (spec §9.1, §9.3)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
import treq

import houweb
from houweb._render import entity_tag, etag_matches

from .conftest import messages
from .support import connect_raw, raw_request, sleep

DATA = bytes(range(256)) * 4  # 1 KiB


@pytest.fixture
def data_file(tmp_path: Any) -> Any:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    return path


async def serve_file(serve: Any, make_response: Any) -> int:
    houweb.urlHandler("/f")(lambda request: make_response())
    return (await serve()).port_numbers()[0]


async def until_gone(path: Any, timeout: float = 3.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if not os.path.exists(path):
            return True
        await sleep(0.05)
    return False


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(
    "name, content_type, expected",
    [
        ("x.png", None, "image/png"),
        ("x.png", "text/plain", "text/plain"),
        ("x.bgeo", None, "application/octet-stream"),
        ("x.json.gz", None, "application/octet-stream"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_file_response_type_is_guessed_or_given(
    serve, client, tmp_path, name, content_type, expected
):
    path = tmp_path / name
    path.write_bytes(DATA)
    port = await serve_file(serve, lambda: houweb.fileResponse(str(path), content_type))
    reply = await client.get(port, "/f")
    assert reply.status == 200 and reply.body == DATA
    assert reply.header("Content-Type") == expected
    assert reply.header("Content-Encoding") in (None, "")


@pytest.mark.parametrize(
    "name, header",
    [
        ("report.csv", 'attachment; filename="report.csv"'),
        (
            "résumé.pdf",
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_download_as_filename_sends_content_disposition(
    serve, client, data_file, name, header
):
    port = await serve_file(
        serve, lambda: houweb.fileResponse(str(data_file), download_as_filename=name)
    )
    reply = await client.get(port, "/f")
    assert reply.header("Content-Disposition") == header and reply.body == DATA


@pytest_twisted.ensureDeferred
async def test_the_file_is_sent_with_its_size_as_content_length(serve, data_file):
    port = await serve_file(serve, lambda: houweb.fileResponse(str(data_file)))
    raw = await raw_request(
        port, b"GET /f HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"\r\nContent-Length: 1024" in head and b"\r\nAccept-Ranges: bytes" in head
    assert body == DATA


@pytest.mark.parametrize("build", ["fileResponse", "Response"])
@pytest_twisted.ensureDeferred
async def test_delete_file_removes_the_file_after_sending_it(serve, client, data_file, build):
    def make() -> houweb.Response:
        if build == "fileResponse":
            return houweb.fileResponse(str(data_file), delete_file=True)
        return houweb.Response(str(data_file), is_file_name=True, delete_file=True)

    port = await serve_file(serve, make)
    assert (await client.get(port, "/f")).body == DATA
    assert await until_gone(data_file)


@pytest_twisted.ensureDeferred
async def test_delete_file_removes_the_file_after_a_mid_transfer_disconnect(serve, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        out.truncate(64 * 1024 * 1024)
    port = await serve_file(serve, lambda: houweb.fileResponse(str(big), delete_file=True))
    raw = await connect_raw(port)
    raw.transport.write(b"GET /f HTTP/1.1\r\nHost: localhost\r\n\r\n")
    for _ in range(100):
        if len(raw.data) > 100_000:
            break
        await sleep(0.02)
    assert raw.data.startswith(b"HTTP/1.1 200 OK")
    raw.transport.abortConnection()
    assert await until_gone(big)


@pytest_twisted.ensureDeferred
async def test_a_missing_file_is_a_404_and_a_warning(serve, client, tmp_path, logged):
    missing = tmp_path / "gone.bin"
    port = await serve_file(serve, lambda: houweb.fileResponse(str(missing)))
    reply = await client.get(port, "/f", headers={"Accept": "application/json"})
    assert reply.status == 404 and reply.header("Content-Type") == "application/json"
    assert "gone.bin" in messages(logged)


@pytest_twisted.ensureDeferred
async def test_a_range_gives_206_with_content_range(serve, client, data_file):
    port = await serve_file(serve, lambda: houweb.fileResponse(str(data_file)))
    reply = await client.get(port, "/f", headers={"Range": "bytes=0-3"})
    assert reply.status == 206 and reply.body == DATA[:4]
    assert reply.header("Content-Range") == "bytes 0-3/1024"


@pytest_twisted.ensureDeferred
async def test_a_suffix_range_gives_the_last_bytes(serve, client, data_file):
    port = await serve_file(serve, lambda: houweb.fileResponse(str(data_file)))
    reply = await client.get(port, "/f", headers={"Range": "bytes=-10"})
    assert reply.status == 206 and reply.body == DATA[-10:]
    assert reply.header("Content-Range") == "bytes 1014-1023/1024"


@pytest_twisted.ensureDeferred
async def test_an_unsatisfiable_range_gives_416_with_the_size(serve, client, data_file):
    port = await serve_file(serve, lambda: houweb.fileResponse(str(data_file)))
    reply = await client.get(port, "/f", headers={"Range": "bytes=5000-6000"})
    assert reply.status == 416 and reply.header("Content-Range") == "bytes */1024"


@pytest_twisted.ensureDeferred
async def test_several_ranges_give_a_multipart_byteranges_answer(serve, client, data_file):
    port = await serve_file(serve, lambda: houweb.fileResponse(str(data_file)))
    reply = await client.get(port, "/f", headers={"Range": "bytes=0-1,10-11"})
    assert reply.status == 206
    assert reply.header("Content-Type").startswith("multipart/byteranges")
    assert b"Content-range: bytes 0-1/1024" in reply.body


@pytest_twisted.ensureDeferred
async def test_head_on_a_file_response_gives_its_length_and_no_body(serve, client, data_file):
    port = await serve_file(serve, lambda: houweb.fileResponse(str(data_file)))
    reply = await client.request("HEAD", port, "/f")
    assert reply.status == 200 and reply.body == b"" and reply.header("Content-Length") == "1024"


@pytest_twisted.ensureDeferred
async def test_a_file_response_with_another_status_keeps_it_and_ignores_range(
    serve, client, data_file
):
    port = await serve_file(
        serve, lambda: houweb.Response(str(data_file), 201, "text/plain", is_file_name=True)
    )
    reply = await client.get(port, "/f", headers={"Range": "bytes=0-3", "If-None-Match": "*"})
    assert reply.status == 201 and reply.body == DATA


@pytest_twisted.ensureDeferred
async def test_if_none_match_with_the_etag_gives_304(serve, client, data_file):
    port = await serve_file(serve, lambda: houweb.fileResponse(str(data_file)))
    tag = (await client.get(port, "/f")).header("ETag")
    assert (await client.get(port, "/f", headers={"If-None-Match": tag})).status == 304
    assert (await client.get(port, "/f", headers={"If-None-Match": f"W/{tag}"})).status == 304


@pytest_twisted.ensureDeferred
async def test_if_none_match_overrides_if_modified_since(serve, client, data_file):
    port = await serve_file(serve, lambda: houweb.fileResponse(str(data_file)))
    reply = await client.get(
        port,
        "/f",
        headers={"If-None-Match": '"other"', "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"},
    )
    assert reply.status == 200 and reply.body == DATA


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
@pytest_twisted.ensureDeferred
async def test_a_large_file_is_streamed_not_read_whole(serve, tmp_path):
    size = 128 * 1024 * 1024
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        out.truncate(size)
    port = await serve_file(serve, lambda: houweb.fileResponse(str(big)))
    before = rss()
    peak = [before]
    received = [0]

    def count(piece: bytes) -> None:
        received[0] += len(piece)
        if received[0] % (8 * 1024 * 1024) < len(piece):
            peak.append(rss())

    response = await treq.get(f"http://127.0.0.1:{port}/f", persistent=False, unbuffered=True)
    await treq.collect(response, count)
    peak.append(rss())
    assert received[0] == size
    assert max(peak) - before < 32 * 1024 * 1024


def test_entity_tags_match_strongly_weakly_or_by_star():
    tag = entity_tag(1024, 1.5)
    assert tag == b'"400-16e360"'
    assert etag_matches(b'"a", ' + tag, tag)
    assert etag_matches(b"W/" + tag, tag)
    assert etag_matches(b"*", tag)
    assert not etag_matches(b'"400-16e361"', tag)


# Headers: the application's win


def header_values(reply: bytes, name: str) -> list[str]:
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return [
        line.split(":", 1)[1].strip()
        for line in head
        if line.lower().startswith(name.lower() + ":")
    ]


@pytest_twisted.ensureDeferred
async def test_the_server_header_is_houweb_without_a_version(serve, tmp_path):
    houweb.urlHandler("/plain")(lambda request: "hi")
    (tmp_path / "f.txt").write_text("file")
    houweb.urlHandler("/file")(lambda request: houweb.fileResponse(str(tmp_path / "f.txt")))
    port = (await serve()).port_numbers()[0]
    for path in ("/plain", "/file", "/missing"):
        reply = await raw_request(
            port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        assert header_values(reply, "Server") == ["houweb"], path
    refused = await raw_request(port, b"GET /plain HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert header_values(refused, "Server") == ["houweb"]


@pytest_twisted.ensureDeferred
async def test_headers_a_handler_sets_replace_the_defaults(serve, tmp_path):
    def custom(request: houweb.Request) -> houweb.Response:
        response = houweb.Response("body", content_type="text/x-mine")
        response.setHeader("Server", "-")
        response.setHeader("Date", "Thu, 01 Jan 1970 00:00:00 GMT")
        response.setHeader("Set-Cookie", "a=1")
        response.addHeader("Set-Cookie", "b=2")
        return response

    houweb.urlHandler("/custom")(custom)
    (tmp_path / "f.txt").write_text("file")

    def file(request: houweb.Request) -> houweb.Response:
        response = houweb.fileResponse(str(tmp_path / "f.txt"))
        response.setHeader("Server", "files")
        return response

    houweb.urlHandler("/file")(file)
    port = (await serve()).port_numbers()[0]
    reply = await raw_request(
        port, b"GET /custom HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert header_values(reply, "Server") == ["-"]
    assert header_values(reply, "Date") == ["Thu, 01 Jan 1970 00:00:00 GMT"]
    assert header_values(reply, "Content-Type") == ["text/x-mine"]
    assert header_values(reply, "Set-Cookie") == ["a=1", "b=2"]
    reply = await raw_request(
        port, b"GET /file HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert header_values(reply, "Server") == ["files"]
