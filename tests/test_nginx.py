"""
examples/nginx/houweb.conf, tested: a real nginx (Debian's package, installed
when missing) in front of two houweb servers, for pages, API calls, uploads
and WebSockets.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import pytest_twisted

import houweb
from houweb.client import AsyncService, File

from .children import free_port, refuses
from .support import ROOT, debian_program, ws_connect

EXAMPLE = os.path.join(ROOT, "examples", "nginx", "houweb.conf")


def nginx_config(directory: str, listen: int, upstreams: list[int]) -> str:
    """Write the example, aimed at ``upstreams`` and listening on ``listen``, in a main config."""
    with open(EXAMPLE) as example:
        text = example.read()
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in upstreams)
    assert "    server 127.0.0.1:8008;\n" in text and "listen 8080;" in text
    text = text.replace("    server 127.0.0.1:8008;\n", servers).replace(
        "listen 8080;", f"listen 127.0.0.1:{listen};"
    )
    with open(os.path.join(directory, "houweb.conf"), "w") as site:
        site.write(text)
    temp = {name: os.path.join(directory, name) for name in ("body", "proxy")}
    user = "user root;\n" if os.geteuid() == 0 else ""
    path = os.path.join(directory, "nginx.conf")
    with open(path, "w") as main:
        main.write(
            f"{user}daemon off;\nworker_processes 1;\npid {directory}/nginx.pid;\n"
            f"error_log {directory}/error.log;\nevents {{}}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {temp['body']};\n"
            f"  proxy_temp_path {temp['proxy']};\n  include {directory}/houweb.conf;\n}}\n"
        )
    return path


@pytest.fixture
def nginx(tmp_path):
    """``start(upstream_ports)`` runs nginx with the example config; returns its port."""
    program = debian_program("nginx", "nginx")
    processes = []

    def start(upstreams: list[int]) -> int:
        listen = free_port()
        config = nginx_config(str(tmp_path), listen, upstreams)
        process = subprocess.Popen(
            [program, "-p", str(tmp_path), "-c", config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        deadline = time.monotonic() + 15
        while refuses(listen):
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        return listen

    yield start
    for process in processes:
        process.kill()
        process.wait()


def register():
    @houweb.urlHandler("/who")
    def who(request):
        return houweb.Response(str(request.port()), content_type="text/plain")

    @houweb.apiFunction("geo")
    def add(request, a, b):
        return a + b

    @houweb.apiFunction()
    def size(request, data):
        return {"name": data.name(), "size": data.size()}

    @houweb.webSocket("/echo")
    class Echo(houweb.WebSocket):
        async def connect(self, request):
            await self.accept()

        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=f"echo {text_data}")


@pytest_twisted.ensureDeferred
async def test_nginx_spreads_requests_over_two_houweb_servers(serve, client, nginx):
    register()
    ports = [(await serve()).port_numbers()[0] for _ in range(2)]
    front = nginx(ports)
    seen = {int((await client.get(front, "/who")).body) for _ in range(6)}
    assert seen == set(ports)


@pytest_twisted.ensureDeferred
async def test_api_calls_and_uploads_pass_through_nginx(serve, nginx, tmp_path):
    register()
    front = nginx([(await serve()).port_numbers()[0]])
    api = AsyncService(f"http://127.0.0.1:{front}/api", timeout=30)
    assert await api.geo.add(1, 2) == 3
    upload = tmp_path / "scene.bin"
    upload.write_bytes(os.urandom(5 * 1024 * 1024))
    assert await api.size(data=File(upload)) == {"name": "scene.bin", "size": 5 * 1024 * 1024}


@pytest_twisted.ensureDeferred
async def test_websockets_pass_through_nginx(serve, nginx):
    register()
    front = nginx([(await serve()).port_numbers()[0]])
    socket = await ws_connect(front, "/echo")
    socket.sendMessage(b"hi")
    assert await socket.received.get() == "echo hi"
    socket.sendClose(1000)
    await socket.closed


@pytest_twisted.ensureDeferred
async def test_the_health_check_and_metrics_pass_through_nginx(serve, client, nginx):
    register()
    front = nginx([(await serve(metrics=True)).port_numbers()[0]])
    reply = await client.get(front, "/healthz")
    assert (reply.status, reply.body) == (200, b'{"status": "ok"}')
    metrics = await client.get(front, "/metrics")
    assert metrics.status == 200 and b"houweb_requests_total" in metrics.body
