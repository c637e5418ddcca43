"""
The disk full while a request body is stored: 507 Insufficient Storage in
houweb's error style, nothing half-written left, the server serving on.

The server's temp directory is a tiny tmpfs mounted for the test (a real full
disk; it needs root, as CI has). Without root those tests are skipped (in
CI, with ``CI=true``, they fail instead), and only the last one, which
writes through ``/dev/full``, runs.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import tempfile
from typing import Any

import pytest
import pytest_twisted

import houweb
from houweb import _uploads
from houweb._uploads import BodyNotStored, form_receiver

from .conftest import messages
from .support import skip_unless_ci
from .test_uploads import FORM_TYPE, form_body, post_form, until_empty

#: The size of the tmpfs: far less than the uploads sent.
DISK_SIZE = 64 * 1024
TOO_BIG = 1024 * 1024


@pytest.fixture
def full_disk(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """tempfile's directory for this test: a tmpfs of ``DISK_SIZE`` bytes."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        skip_unless_ci(f"cannot mount a tiny tmpfs (needs root): {mounted.stderr.strip()}")
    monkeypatch.setattr(tempfile, "tempdir", str(mount_point))
    yield str(mount_point)
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def upload_handler(request: houweb.Request) -> str:
    return ",".join(f"{name}={f.size()}" for name, f in request.files().items())


@pytest_twisted.ensureDeferred
async def test_an_upload_larger_than_the_free_disk_space_is_a_507(serve, client, full_disk):
    called = []
    houweb.urlHandler("/up")(lambda request: called.append(1) or upload_handler(request))
    port = (await serve(max_in_memory_file_upload_size=10)).port_numbers()[0]
    body = form_body(("small", "s.bin", "", b"s" * 100), ("big", "b.bin", "", b"b" * TOO_BIG))
    reply = await post_form(client, port, "/up", body)
    assert reply.status == 507
    assert reply.header("Content-Type").startswith("text/html")
    assert "507 Insufficient Storage" in reply.text
    assert "request body could not be stored: no space left on device" in reply.text
    assert full_disk not in reply.text  # no server path
    assert called == []
    assert await until_empty(full_disk) == []  # neither file left, nor a part of one


@pytest_twisted.ensureDeferred
async def test_after_a_507_the_server_serves_uploads_that_fit(serve, client, full_disk, logged):
    houweb.urlHandler("/up")(upload_handler)
    port = (await serve(max_in_memory_file_upload_size=10)).port_numbers()[0]
    too_big = form_body(("big", "b.bin", "", b"b" * TOO_BIG))
    assert (await post_form(client, port, "/up", too_big)).status == 507
    assert "could not store a request body in " + full_disk in messages(logged)
    fits = form_body(("f", "f.bin", "", b"f" * 1000))
    assert (await post_form(client, port, "/up", fits)).text == "f=1000"
    assert await until_empty(full_disk) == []


@pytest_twisted.ensureDeferred
async def test_a_507_on_api_is_json(serve, client, full_disk):
    port = (await serve(max_in_memory_file_upload_size=10)).port_numbers()[0]
    body = form_body(("big", "b.bin", "", b"b" * TOO_BIG))
    reply = await post_form(client, port, "/api", body, Accept="text/html")
    assert reply.status == 507
    assert reply.header("Content-Type") == "application/json"
    assert json.loads(reply.body) == {
        "error": "request body could not be stored: no space left on device"
    }


@pytest_twisted.ensureDeferred
async def test_a_plain_body_larger_than_the_free_disk_space_is_a_507(serve, client, full_disk):
    houweb.urlHandler("/raw")(lambda request: str(len(request.body())))
    port = (await serve()).port_numbers()[0]
    headers = {"Content-Type": "application/octet-stream", "Accept": "application/json"}
    reply = await client.post(port, "/raw", data=b"r" * TOO_BIG, headers=headers)
    assert reply.status == 507
    assert json.loads(reply.body)["error"].startswith("request body could not be stored")
    fits = await client.post(port, "/raw", data=b"r" * 1000, headers=headers)
    assert fits.text == "1000"
    assert os.listdir(full_disk) == []


@pytest_twisted.ensureDeferred
async def test_save_to_disk_on_a_full_disk_raises_and_leaves_no_partial_file(
    serve, client, full_disk
):
    def handler(request: houweb.Request) -> str:
        try:
            request.files()["f"].saveToDisk()
        except OSError as exc:
            return f"{errno.errorcode[exc.errno]} {os.listdir(full_disk)}"
        return "saved"

    houweb.urlHandler("/up")(handler)
    port = (await serve(max_in_memory_file_upload_size=TOO_BIG)).port_numbers()[0]
    reply = await post_form(client, port, "/up", form_body(("f", "f.bin", "", b"f" * TOO_BIG)))
    assert reply.text == "ENOSPC []"


def test_a_part_that_cannot_be_written_is_reported_and_its_temp_file_deleted(tmp_path, monkeypatch):
    """Runs anywhere on Linux: the spool file writes to /dev/full (ENOSPC)."""
    made: list[str] = []

    def full_temp_file() -> tuple[Any, str]:
        path = str(tmp_path / f"houweb-upload-{len(made)}")
        open(path, "wb").close()
        made.append(path)
        return open("/dev/full", "wb"), path

    monkeypatch.setattr(_uploads, "new_temp_file", full_temp_file)
    receiver = form_receiver(FORM_TYPE, 10)
    assert receiver is not None
    receiver.feed(form_body(("f", "f.bin", "", b"f" * TOO_BIG)))
    with pytest.raises(BodyNotStored) as raised:
        receiver.finish()
    assert raised.value.status == 507
    assert str(raised.value) == "request body could not be stored: no space left on device"
    assert made and not any(os.path.exists(path) for path in made)
