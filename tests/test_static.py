"""Static directories: registerStaticFilesDirectory (spec §10.1)."""

from __future__ import annotations

import email.utils
import os
import threading
from typing import Any

import pytest
import pytest_twisted

import houweb
from houweb._static import resolve

from .conftest import messages
from .support import raw_request

CSS = b"body { color: #333; }\n"


@pytest.fixture
def site_dir(tmp_path: Any) -> Any:
    """``d/css/main.css``, ``d/index.html``, and ``secret.txt`` beside (outside) ``d``."""
    root = tmp_path / "d"
    (root / "css").mkdir(parents=True)
    (root / "css" / "main.css").write_bytes(CSS)
    (root / "index.html").write_text("<h1>index</h1>")
    (tmp_path / "secret.txt").write_text("secret")
    return root


async def serve_static(serve: Any, directory: Any, prefix: str = "/static", **run: Any) -> int:
    houweb.registerStaticFilesDirectory(str(directory), prefix)
    return (await serve(**run)).port_numbers()[0]


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.") else 0


async def raw_get(port: int, target: str) -> bytes:
    request = f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    return await raw_request(port, request.encode("latin-1"))


@pytest_twisted.ensureDeferred
async def test_a_file_is_served_byte_for_byte_with_its_type(serve, client, site_dir):
    port = await serve_static(serve, site_dir)
    reply = await client.get(port, "/static/css/main.css")
    assert reply.status == 200 and reply.body == CSS
    assert reply.header("Content-Type") == "text/css"
    assert reply.header("Accept-Ranges") == "bytes"
    assert reply.header("Last-Modified") and reply.header("ETag")
    # treq's decoder drops Content-Length; look at the wire.
    assert b"\r\nContent-Length: %d\r\n" % len(CSS) in await raw_get(port, "/static/css/main.css")


@pytest.mark.parametrize(
    "path", ["/static/css/nope.css", "/static/css/", "/static/css", "/static", "/static/"]
)
@pytest_twisted.ensureDeferred
async def test_missing_files_and_directories_are_404_even_with_an_index_html(
    serve, client, site_dir, path
):
    (site_dir / "css" / "index.html").write_text("no listing")
    port = await serve_static(serve, site_dir)
    reply = await client.get(port, path)
    assert reply.status == 404 and b"Not found" in reply.body


OUTSIDE = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/css/..%2F..%2Fsecret.txt",
    "/static/css/../../secret.txt",
    "/static/./css/main.css",
    "/static/css//main.css",
    "/static/..\\secret.txt",
    "/static/..%5csecret.txt",
    "/static/%2Fetc%2Fpasswd",
    "/static//etc/passwd",
]


@pytest.mark.parametrize("target", OUTSIDE)
@pytest_twisted.ensureDeferred
async def test_nothing_outside_the_directory_is_served(serve, site_dir, target):
    port = await serve_static(serve, site_dir)
    raw = await raw_get(port, target)
    assert status_of(raw) == 404, raw[:200]
    assert b"secret" not in raw.split(b"\r\n\r\n", 1)[1].replace(b"secret.txt", b"")


@pytest_twisted.ensureDeferred
async def test_an_encoded_nul_is_refused_before_routing(serve, site_dir):
    (site_dir / "a").write_text("a")
    port = await serve_static(serve, site_dir)
    assert status_of(await raw_get(port, "/static/a%00.txt")) == 400


@pytest_twisted.ensureDeferred
async def test_a_symlink_leading_outside_is_404_one_inside_is_served(serve, client, site_dir):
    (site_dir / "out.txt").symlink_to(site_dir.parent / "secret.txt")
    (site_dir / "style.css").symlink_to(site_dir / "css" / "main.css")
    (site_dir / "up").symlink_to(site_dir.parent)
    port = await serve_static(serve, site_dir)
    assert (await client.get(port, "/static/out.txt")).status == 404
    assert (await client.get(port, "/static/up/secret.txt")).status == 404
    inside = await client.get(port, "/static/style.css")
    assert inside.status == 200 and inside.body == CSS


@pytest_twisted.ensureDeferred
async def test_percent_encoded_names_are_served(serve, client, site_dir):
    (site_dir / "café menu.txt").write_text("menu")
    port = await serve_static(serve, site_dir)
    reply = await client.get(port, "/static/caf%C3%A9%20menu.txt")
    assert reply.status == 200 and reply.text == "menu"


@pytest_twisted.ensureDeferred
async def test_if_modified_since_gives_304(serve, client, site_dir):
    port = await serve_static(serve, site_dir)
    stamp = email.utils.formatdate(os.path.getmtime(site_dir / "css" / "main.css") + 5, usegmt=True)
    reply = await client.get(port, "/static/css/main.css", headers={"If-Modified-Since": stamp})
    assert reply.status == 304 and reply.body == b""


@pytest_twisted.ensureDeferred
async def test_if_none_match_with_the_etag_gives_304_and_another_tag_the_file(
    serve, client, site_dir
):
    port = await serve_static(serve, site_dir)
    tag = (await client.get(port, "/static/css/main.css")).header("ETag")
    same = await client.get(port, "/static/css/main.css", headers={"If-None-Match": f'"x", {tag}'})
    assert same.status == 304 and same.body == b"" and same.header("ETag") == tag
    other = await client.get(port, "/static/css/main.css", headers={"If-None-Match": '"x"'})
    assert other.status == 200 and other.body == CSS


@pytest_twisted.ensureDeferred
async def test_the_etag_changes_when_the_file_does(serve, client, site_dir):
    port = await serve_static(serve, site_dir)
    before = (await client.get(port, "/static/css/main.css")).header("ETag")
    (site_dir / "css" / "main.css").write_bytes(CSS + b"/* more */")
    after = await client.get(port, "/static/css/main.css", headers={"If-None-Match": before})
    assert after.status == 200 and after.header("ETag") != before


@pytest_twisted.ensureDeferred
async def test_head_gives_the_headers_without_the_body(serve, client, site_dir):
    port = await serve_static(serve, site_dir)
    reply = await client.request("HEAD", port, "/static/css/main.css")
    assert reply.status == 200 and reply.body == b""
    assert reply.header("Content-Length") == str(len(CSS))
    assert reply.header("Content-Type") == "text/css"


@pytest_twisted.ensureDeferred
async def test_a_range_gives_206_with_content_range(serve, client, site_dir):
    port = await serve_static(serve, site_dir)
    reply = await client.get(port, "/static/css/main.css", headers={"Range": "bytes=0-3"})
    assert reply.status == 206 and reply.body == CSS[:4]
    assert reply.header("Content-Range") == f"bytes 0-3/{len(CSS)}"


@pytest_twisted.ensureDeferred
async def test_an_unsatisfiable_range_gives_416(serve, client, site_dir):
    port = await serve_static(serve, site_dir)
    reply = await client.get(port, "/static/css/main.css", headers={"Range": "bytes=999-"})
    assert reply.status == 416
    assert reply.header("Content-Range") == f"bytes */{len(CSS)}"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("scene.bgeo", "application/octet-stream"),
        ("archive.tar.gz", "application/octet-stream"),
        ("page.html", "text/html"),
        ("logo.png", "image/png"),
        ("noextension", "application/octet-stream"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_content_type_follows_the_fileResponse_rule_without_content_encoding(
    serve, client, site_dir, name, expected
):
    (site_dir / name).write_bytes(b"\x1f\x8b data")
    port = await serve_static(serve, site_dir)
    reply = await client.get(port, f"/static/{name}")
    assert reply.header("Content-Type") == expected
    assert reply.header("Content-Encoding") in (None, "")
    assert reply.body == b"\x1f\x8b data"


@pytest_twisted.ensureDeferred
async def test_a_more_specific_handler_wins_over_the_static_prefix(serve, client, site_dir):
    houweb.urlHandler("/static/geo", is_prefix=True)(lambda request: "geo " + request.path())
    port = await serve_static(serve, site_dir)
    assert (await client.get(port, "/static/geo/foo.bgeo")).text == "geo /static/geo/foo.bgeo"
    assert (await client.get(port, "/static/css/main.css")).body == CSS


@pytest_twisted.ensureDeferred
async def test_static_beats_a_prefix_handler_on_the_same_path_with_no_fall_through(
    serve, client, site_dir
):
    houweb.urlHandler("/static", is_prefix=True)(lambda request: "handler")
    houweb.urlHandler("/", is_prefix=True)(lambda request: "root")
    port = await serve_static(serve, site_dir)
    assert (await client.get(port, "/static/css/main.css")).body == CSS
    assert (await client.get(port, "/static/missing.css")).status == 404
    assert (await client.get(port, "/elsewhere")).text == "root"


@pytest_twisted.ensureDeferred
async def test_a_directory_can_be_served_at_the_root(serve, client, site_dir):
    port = await serve_static(serve, site_dir, "/")
    assert (await client.get(port, "/css/main.css")).body == CSS
    assert (await client.get(port, "/")).status == 404


def test_a_missing_directory_raises_operation_failed(registry, tmp_path):
    with pytest.raises(houweb.OperationFailed, match="nope"):
        houweb.registerStaticFilesDirectory(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(houweb.OperationFailed, match="file"):
        houweb.registerStaticFilesDirectory(str(tmp_path / "file"))


def test_a_bad_prefix_or_port_raises(registry, tmp_path):
    with pytest.raises(ValueError):
        houweb.registerStaticFilesDirectory(str(tmp_path), "static")
    with pytest.raises(ValueError):
        houweb.registerStaticFilesDirectory(str(tmp_path), "/static", port=70000)
    with pytest.raises(TypeError):
        houweb.registerStaticFilesDirectory(str(tmp_path), "/static", port=True)


@pytest_twisted.ensureDeferred
async def test_the_directory_is_made_absolute_at_registration(serve, client, site_dir, monkeypatch):
    monkeypatch.chdir(site_dir.parent)
    houweb.registerStaticFilesDirectory("d")
    monkeypatch.chdir(site_dir / "css")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/static/css/main.css")).body == CSS


@pytest_twisted.ensureDeferred
async def test_registering_the_same_prefix_again_replaces_it_with_a_warning(
    serve, client, site_dir, tmp_path, logged
):
    other = tmp_path / "other"
    (other / "css").mkdir(parents=True)
    (other / "css" / "main.css").write_text("other")
    houweb.registerStaticFilesDirectory(str(site_dir))
    port = await serve_static(serve, other)
    assert (await client.get(port, "/static/css/main.css")).text == "other"
    assert "replaced" in messages(logged)


@pytest_twisted.ensureDeferred
async def test_port_minus_one_serves_every_port_and_a_number_only_that_one(
    serve, client, site_dir, tmp_path
):
    server = await serve(ports=[0])
    main, extra = server.port_numbers()
    houweb.registerStaticFilesDirectory(str(site_dir))
    houweb.registerStaticFilesDirectory(str(site_dir), "/only", port=extra)
    assert (await client.get(main, "/static/css/main.css")).body == CSS
    assert (await client.get(extra, "/static/css/main.css")).body == CSS
    assert (await client.get(extra, "/only/css/main.css")).body == CSS
    assert (await client.get(main, "/only/css/main.css")).status == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest_twisted.ensureDeferred
async def test_methods_other_than_get_and_head_get_405(serve, client, site_dir, method):
    port = await serve_static(serve, site_dir)
    reply = await client.request(method, port, "/static/css/main.css")
    assert reply.status == 405 and reply.header("Allow") == "GET, HEAD"


@pytest_twisted.ensureDeferred
async def test_static_files_are_served_while_every_pool_thread_is_busy(serve, client, site_dir):
    release = threading.Event()
    houweb.urlHandler("/busy")(lambda request: release.wait(10) and "done")
    port = await serve_static(serve, site_dir, max_num_threads=1)
    busy = client.get(port, "/busy")
    try:
        reply = await client.get(port, "/static/css/main.css", timeout=5)
        assert reply.body == CSS
    finally:
        release.set()
    assert (await busy).text == "done"


def test_resolve_accepts_only_regular_files_inside_the_root(site_dir):
    root = os.path.realpath(site_dir)
    assert resolve(root, "/css/main.css") == os.path.join(root, "css", "main.css")
    for relative in ["", "/", "/css", "/../secret.txt", "/css/../index.html", "/a\x00b", "/c:\\x"]:
        assert resolve(root, relative) is None, relative
