"""run()'s signature and the checking of its arguments (spec §3, §3.6)."""

from __future__ import annotations

import inspect

import pytest

import houweb
from houweb._config import ServerConfig


def test_run_has_houdinis_signature_then_keyword_only_extras():
    parameters = list(inspect.signature(houweb.run).parameters.values())
    houdini = [(p.name, p.default) for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert houdini == [
        ("port", 8008),
        ("debug", False),
        ("max_num_threads", 4),
        ("in_background", None),
        ("reload_source_changes", None),
        ("max_in_memory_file_upload_size", None),
        ("max_request_size", None),
        ("settings", None),
        ("ports", []),
    ]
    extras = [(p.name, p.default) for p in parameters if p.kind is p.KEYWORD_ONLY]
    assert extras[:3] == [("interface", "127.0.0.1"), ("listen", []), ("shutdown_grace", 10.0)]


def test_defaults():
    config = ServerConfig.from_arguments()
    assert config.max_in_memory_file_upload_size == 2_621_440
    assert config.max_request_size == 3_221_225_472
    assert config.interface == "127.0.0.1"
    assert config.max_connections == 1000
    assert config.endpoint_descriptions() == ["tcp:8008:interface=127.0.0.1"]


@pytest.mark.parametrize(
    "arguments, error, name",
    [
        (dict(port="8008"), TypeError, "port"),
        (dict(port=True), TypeError, "port"),
        (dict(port=70000), ValueError, "port"),
        (dict(max_num_threads=0), ValueError, "max_num_threads"),
        (dict(max_request_size=-1), ValueError, "max_request_size"),
        (dict(max_in_memory_file_upload_size=1.5), TypeError, "max_in_memory_file_upload_size"),
        (dict(shutdown_grace=-1), ValueError, "shutdown_grace"),
        (dict(ports=[9000, 9000]), ValueError, "ports"),
        (dict(port=9000, ports=[9000]), ValueError, "ports"),
        (dict(ports=8009), TypeError, "ports"),
        (dict(listen=["unix:/tmp/x"]), ValueError, "unix:/tmp/x"),
        (dict(listen=["tcp:notaport"]), ValueError, "tcp:notaport"),
        (dict(settings=42), TypeError, "settings"),
        (dict(max_connections=0), ValueError, "max_connections"),
        (dict(max_connections="10"), TypeError, "max_connections"),
    ],
)
def test_bad_arguments_are_named(arguments, error, name):
    with pytest.raises(error, match=name):
        ServerConfig.from_arguments(**arguments)


def test_bad_arguments_to_run_start_nothing():
    with pytest.raises(TypeError):
        houweb.run(port="8008", in_background=True)
    assert houweb.serverPorts() == []
    assert houweb.isInDebugMode() is False


def test_endpoints_are_main_then_ports_then_listen():
    config = ServerConfig.from_arguments(
        port=1, ports=[2], listen=["ssl:3:privateKey=k.pem"], interface="::1"
    )
    assert config.endpoint_descriptions() == [
        "tcp:1:interface=\\:\\:1",
        "tcp:2:interface=\\:\\:1",
        "ssl:3:privateKey=k.pem",
    ]
