"""registerArchiveFile: files served from inside a zip, by a static directory's rules."""

from __future__ import annotations

import os
import zipfile

import pytest
import pytest_twisted

import houweb

from .support import raw_request

DATA = bytes(range(256)) * 400  # 102400 bytes
CSS = b"body { color: red }\n" * 50


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "site.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("index.html", "<h1>archived</h1>")
        zf.writestr("css/main.css", CSS, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("data.bin", DATA, compress_type=zipfile.ZIP_STORED)
        zf.writestr("docs/", "")  # an explicit directory entry
        zf.writestr("api", "member shadowed by a handler")
        zf.writestr("../evil.txt", "zip slip")  # a name that tries to leave the archive
    (tmp_path / "outside.txt").write_text("not in the archive")
    return path


@pytest_twisted.ensureDeferred
async def test_members_are_served_with_their_content_type_etag_and_head(serve, client, archive):
    houweb.registerArchiveFile(str(archive), "/site")
    port = (await serve()).port_numbers()[0]
    page = await client.get(port, "/site/index.html")
    assert (page.status, page.body) == (200, b"<h1>archived</h1>")
    assert page.header("Content-Type").startswith("text/html")
    css = await client.get(port, "/site/css/main.css")
    assert css.body == CSS and css.header("Content-Type").startswith("text/css")
    assert css.header("ETag") and css.header("Last-Modified")
    assert css.header("Accept-Ranges") == "bytes"
    head = await client.request("HEAD", port, "/site/data.bin")
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == str(len(DATA))


@pytest.mark.parametrize("member", ["data.bin", "css/main.css"])  # stored and deflated
@pytest_twisted.ensureDeferred
async def test_range_and_if_range_as_for_a_static_file(serve, client, archive, member):
    houweb.registerArchiveFile(str(archive), "/site")
    port = (await serve()).port_numbers()[0]
    whole = DATA if member == "data.bin" else CSS
    path = f"/site/{member}"
    tag = (await client.get(port, path)).header("ETag")
    part = await client.get(port, path, headers={"Range": "bytes=100-199"})
    assert part.status == 206 and part.body == whole[100:200]
    assert part.header("Content-Range") == f"bytes 100-199/{len(whole)}"
    matching = await client.get(port, path, headers={"Range": "bytes=-10", "If-Range": tag})
    assert matching.status == 206 and matching.body == whole[-10:]
    stale = await client.get(port, path, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status == 200 and stale.body == whole
    beyond = await client.get(port, path, headers={"Range": f"bytes={len(whole) + 5}-"})
    assert beyond.status == 416


@pytest_twisted.ensureDeferred
async def test_conditional_requests_answer_304(serve, client, archive):
    houweb.registerArchiveFile(str(archive), "/site")
    port = (await serve()).port_numbers()[0]
    first = await client.get(port, "/site/index.html")
    etag, modified = first.header("ETag"), first.header("Last-Modified")
    assert (
        await client.get(port, "/site/index.html", headers={"If-None-Match": etag})
    ).status == 304
    since = await client.get(port, "/site/index.html", headers={"If-Modified-Since": modified})
    assert since.status == 304


@pytest.mark.parametrize(
    "target",
    [
        b"/site/docs",
        b"/site/docs/",
        b"/site/css",
        b"/site/missing.txt",
        b"/site/%2E%2E/evil.txt",
        b"/site/../outside.txt",
        b"/site//index.html",
        b"/site/css%5Cmain.css",
        b"/site/index.html/",
    ],
)
@pytest_twisted.ensureDeferred
async def test_directories_and_paths_leaving_the_archive_are_404(serve, archive, target):
    houweb.registerArchiveFile(str(archive), "/site")
    port = (await serve()).port_numbers()[0]
    reply = await raw_request(
        port, b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 404 "), reply[:100]
    assert b"zip slip" not in reply and b"not in the archive" not in reply


@pytest_twisted.ensureDeferred
async def test_a_more_specific_handler_wins_and_other_methods_get_405(serve, client, archive):
    houweb.registerArchiveFile(str(archive), "/site")
    houweb.urlHandler("/site/api")(lambda request: "handler")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/site/api")).text == "handler"
    post = await client.post(port, "/site/index.html", data=b"x")
    assert post.status == 405 and post.header("Allow") == "GET, HEAD"


@pytest_twisted.ensureDeferred
async def test_a_replaced_archive_is_served_with_new_tags(serve, client, archive):
    houweb.registerArchiveFile(str(archive), "/site")
    port = (await serve()).port_numbers()[0]
    before = await client.get(port, "/site/index.html")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("index.html", "<h1>new</h1>")
    stat = os.stat(archive)
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    after = await client.get(port, "/site/index.html")
    assert after.body == b"<h1>new</h1>" and after.header("ETag") != before.header("ETag")
    assert (await client.get(port, "/site/data.bin")).status == 404


@pytest_twisted.ensureDeferred
async def test_a_whitelisted_origin_gets_cors_headers_on_a_member(serve, client, archive):
    houweb.registerArchiveFile(str(archive), "/site")
    port = (await serve(settings={"CORS_ALLOWED_ORIGINS": ["http://a.example"]})).port_numbers()[0]
    reply = await client.get(port, "/site/index.html", headers={"Origin": "http://a.example"})
    assert reply.header("Access-Control-Allow-Origin") == "http://a.example"


def test_registerArchiveFile_refuses_what_is_not_a_zip(registry, tmp_path):
    (tmp_path / "plain.txt").write_text("x")
    for path in (tmp_path / "missing.zip", tmp_path / "plain.txt", tmp_path):
        with pytest.raises(houweb.OperationFailed, match="is not a zip archive"):
            houweb.registerArchiveFile(str(path), "/site")


@pytest_twisted.ensureDeferred
async def test_ranges_that_would_decompress_a_lot_on_the_reactor_are_ignored(
    serve, client, tmp_path
):
    # Seeking in a compressed member decompresses everything before the
    # offset, on the reactor thread, and from the start again for each range
    # before the last: 16 alternating ranges in a 1 GiB member of zeros
    # (4.6 MB zipped) held every other request for seconds. A compressed
    # member now honours one range, and only if it is small; stored members
    # are slices of the archive, where a seek costs nothing.
    from houweb._archive import MAX_SEEKABLE_COMPRESSED

    path = tmp_path / "bomb.zip"
    big = MAX_SEEKABLE_COMPRESSED + 1
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("zeros.bin", bytes(big))
        zf.writestr("small.css", CSS)
        zf.writestr("data.bin", DATA, compress_type=zipfile.ZIP_STORED)
    houweb.registerArchiveFile(str(path), "/z")
    port = (await serve()).port_numbers()[0]
    whole = await client.get(port, "/z/zeros.bin", headers={"Range": f"bytes={big - 10}-"})
    assert whole.status == 200 and len(whole.body) == big
    assert whole.header("Accept-Ranges") == "none"
    several = await client.get(port, "/z/small.css", headers={"Range": "bytes=900-909,0-9"})
    assert several.status == 200 and several.body == CSS
    one = await client.get(port, "/z/small.css", headers={"Range": "bytes=900-909"})
    assert one.status == 206 and one.body == CSS[900:910]
    stored = await client.get(port, "/z/data.bin", headers={"Range": "bytes=-5,100-104,0-4"})
    assert stored.status == 206
    for part in (DATA[-5:], DATA[100:105], DATA[:5]):
        assert part in stored.body
    assert (await client.get(port, "/z/data.bin")).body == DATA
