"""
The descriptions of the API functions (houweb/_describe.py, _openapi.py,
_api_views.py): one describer; houweb.functions, /api/openapi.json,
/api/client.js and /api/docs built from it; the token, the ports and the
API_DOCS switch applying to all of them.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap
import threading
from typing import Any, Literal
from urllib.parse import unquote

import jsonschema
import pytest
import pytest_twisted
from openapi_spec_validator import validate
from twisted.internet import defer, threads

import houweb
from houweb._describe import FILE_SCHEMA, describe
from houweb._openapi import DIALECTS, operation_path
from houweb._typescript import declarations

from .browser import Browser, chromium_or_skip
from .conftest import messages
from .support import ROOT

JSON_HEADERS = {"Content-Type": ["application/json"]}
VIEW_PATHS = ("/api/openapi.json", "/api/client.js", "/api/client.d.ts", "/api/docs")


def register_examples(seen: list[Any]) -> None:
    """The functions the tests call; each call is appended to ``seen``."""

    @houweb.apiFunction("geo", arg_types={"x": float, "y": float, "z": float})
    def vector_length(request, x, y, z):
        """Return the length of the vector (x, y, z)."""
        seen.append(("vector_length", x, y, z))
        return (x * x + y * y + z * z) ** 0.5

    @houweb.apiFunction("files", return_binary=True)
    def upper(request, data: houweb.UploadedFile, suffix: str = "") -> bytes:
        """
        Upper-case an uploaded file.

        :param data: the file to read.
        :param suffix: appended to the result.
        """
        content = data.read()
        seen.append(("upper", content, suffix))
        return content.upper() + suffix.encode()

    @houweb.apiFunction()
    def divide(request, a: float, b: float = 1.0) -> float:
        """Divide a by b."""
        seen.append(("divide", a, b))
        if b == 0:
            raise houweb.APIError("b must not be 0")
        return a / b


async def api_call(client, port, name, *args, **kwargs):
    body = json.dumps([name, list(args), kwargs]).encode()
    return await client.post(port, "/api", data=body, headers=JSON_HEADERS)


async def get_json(client, port, path, **kwargs):
    reply = await client.get(port, path, **kwargs)
    assert reply.status == 200, reply.text
    return json.loads(reply.body)


def client_module_functions(text: str) -> list[dict[str, Any]]:
    """The descriptions client.js embeds (the JSON between its markers)."""
    start = text.index("export const functions = ") + len("export const functions = ")
    end = text.index(";\n", start)
    return json.loads(text[start:end].replace("<\\/", "</"))


# The describer.


def kitchen_sink(
    request,
    a: int,
    /,
    b: str,
    *rest: float,
    c: list[int] | None = None,
    flag: bool = False,
    mode: Literal["x", "y"] = "x",
    **extra: str,
) -> dict[str, float]:
    """
    Do everything.

    More text.

    :param b: the name,
        on two lines.
    :returns: a mapping.
    """


def test_the_describer_turns_a_signature_into_json_schema(registry):
    houweb.apiFunction("k")(kitchen_sink)
    d = describe(registry.function("k.kitchen_sink", 0, 0))
    assert d.parameters == {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "string", "description": "the name, on two lines."},
            "rest": {"type": "array", "items": {"type": "number"}},
            "c": {
                "anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}],
                "default": None,
            },
            "flag": {"type": "boolean", "default": False},
            "mode": {"enum": ["x", "y"], "default": "x"},
        },
        "required": ["a", "b"],
        "additionalProperties": {"type": "string"},
    }
    assert (d.order, d.positional_only) == (["a", "b", "c", "flag", "mode"], ["a"])
    assert d.keyword_only == ["c", "flag", "mode"]
    assert (d.var_positional, d.var_keyword, d.files) == ("rest", "extra", [])
    assert d.result == {
        "type": "object",
        "additionalProperties": {"type": "number"},
        "description": "a mapping.",
    }
    assert d.result_media_type == "application/json"
    assert (d.summary, d.namespace) == ("Do everything.", "k")


def optional_file(request, data: houweb.UploadedFile | None = None) -> None:
    """An upload that may be left out."""


def test_the_describer_uses_arg_types_files_and_binary_results(registry):
    register_examples([])

    def parse(value):
        return value

    houweb.apiFunction(arg_types={"v": parse})(lambda request, v: v)
    vector = describe(registry.function("geo.vector_length", 0, 0))
    assert vector.parameters["properties"]["x"] == {"type": "number"}
    assert vector.result == {} and vector.result_media_type == "application/json"
    upper = describe(registry.function("files.upper", 0, 0))
    assert upper.files == ["data"]
    assert upper.parameters["properties"]["data"] == {
        **FILE_SCHEMA,
        "description": "the file to read.",
    }
    assert upper.result is None and upper.result_media_type == "application/octet-stream"
    houweb.apiFunction("maybe")(optional_file)
    maybe = describe(registry.function("maybe.optional_file", 0, 0))
    assert maybe.files == ["data"] and "required" not in maybe.parameters
    custom = describe(registry.function("<lambda>", 0, 0))
    assert custom.parameters["properties"]["v"] == {"description": "converted with parse"}


def test_a_bytes_parameter_is_a_json_string_in_every_view_not_a_file(registry):
    # A file part would reach it as an UploadedFile; JSON sends it a str.
    @houweb.apiFunction()
    def raw(request, data: bytes, more: bytes | None = None) -> bytes:
        return b""

    d = describe(registry.function("raw", 0, 0))
    assert d.files == []
    assert d.parameters["properties"]["data"] == {"type": "string"}
    assert d.parameters["properties"]["more"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert "data: string" in declarations([d]) and "Blob>" in declarations([d])
    assert d.result is None and d.result_media_type == "application/octet-stream"


# The four views agree.


@pytest_twisted.ensureDeferred
async def test_houweb_functions_openapi_and_client_js_describe_every_function_alike(serve, client):
    register_examples([])
    houweb.apiFunction("k")(kitchen_sink)
    port = (await serve()).port_numbers()[0]
    types = (await client.get(port, "/api/client.d.ts")).text
    assert "vector_length: APIFunction<[x: number, y: number, z: number]" in types
    assert (
        "upper: APIFunction<[data: Blob, suffix?: string], { data: Blob; suffix?: string }, Blob>"
        in types
    )
    assert (
        "divide: APIFunction<[a: number, b?: number], { a: number; b?: number }, number>" in types
    )
    assert (
        "kitchen_sink: APIFunction<[a: number, b: string, ...rest: Array<number>], "
        '{ b: string; c?: (Array<number>) | (null); flag?: boolean; mode?: "x" | "y"; '
        "[name: string]: any }, { [name: string]: number }>;"
    ) in types
    names = await assert_views_agree(client, port)
    assert names == ["divide", "files.upper", "geo.vector_length", "k.kitchen_sink"]


async def assert_views_agree(client, port) -> list[str]:
    """
    Check that houweb.functions, client.js and openapi.json describe every
    function on ``port`` alike, and that the document validates.

    :returns: the names of the functions.
    """
    listed = json.loads((await api_call(client, port, "houweb.functions")).body)
    document = await get_json(client, port, "/api/openapi.json")
    validate(document)
    module = (await client.get(port, "/api/client.js")).text
    embedded = {f["name"]: f for f in client_module_functions(module)}
    names = [f["name"] for f in listed]
    assert names == sorted(embedded)
    assert sorted(unquote(path.split("#", 1)[1]) for path in document["paths"]) == names
    for entry in listed:
        name = entry["name"]
        assert embedded[name]["parameters"] == entry["parameters"]
        assert embedded[name]["result"] == entry["result"]
        operation = document["paths"][operation_path(name)]["post"]
        assert operation["operationId"] == name
        content = operation["requestBody"]["content"]
        if "application/json" in content:
            call = content["application/json"]["schema"]["prefixItems"]
            assert call[0] == {"const": name}
            by_name = entry["parameters"]["properties"]
            for key, schema in call[2]["properties"].items():
                assert by_name[key] == schema
        else:
            assert set(content) == {"multipart/form-data"}
            parts = content["multipart/form-data"]["schema"]["properties"]
            for file_name in embedded[name]["files"]:
                assert parts[file_name] == FILE_SCHEMA
        success = operation["responses"]["200"]["content"]
        if entry["result_media_type"] == "application/octet-stream":
            assert list(success) == ["application/octet-stream"]
        else:
            assert success["application/json"]["schema"] == entry["result"]
    return names


@pytest_twisted.ensureDeferred
async def test_the_views_agree_on_the_readme_and_example_functions(serve, client):
    readme = open(os.path.join(ROOT, "README.rst"), encoding="utf-8").read()
    example = readme.split("API functions\n-------------\n", 1)[1].split(".. code-block:: python")[
        1
    ]
    code = textwrap.dedent(example.split("\nThe first parameter", 1)[0])
    exec(compile(code, "README.rst", "exec"), {"houweb": houweb})
    runpy.run_path(os.path.join(ROOT, "examples", "progress", "server.py"), run_name="progress")
    port = (await serve()).port_numbers()[0]
    names = await assert_views_agree(client, port)
    assert names == ["geo.vector_length", "jobs.render"]
    document = await get_json(client, port, "/api/openapi.json")
    render = document["paths"]["/api#jobs.render"]["post"]
    call = render["requestBody"]["content"]["application/json"]["schema"]["prefixItems"][2]
    assert call["properties"] == {
        "job": {"type": "string"},
        "steps": {"type": "integer", "default": 40},
        "seconds": {"type": "number", "default": 2.0},
    }
    assert render["responses"]["200"]["content"]["application/json"]["schema"] == {"type": "object"}
    reply = await api_call(client, port, "geo.vector_length", 1, 2, -3)
    assert (reply.status, json.loads(reply.body)) == (422, {"error": "z must be positive"})


# OpenAPI.


@pytest_twisted.ensureDeferred
async def test_the_openapi_document_validates_and_lists_the_errors_api_sends(serve, client):
    register_examples([])
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/api/openapi.json")
    assert reply.header("Content-Type") == "application/json"
    document = json.loads(reply.body)
    validate(document)
    for dialect in ("json", "form"):
        validate(await get_json(client, port, f"/api/openapi.json?dialect={dialect}"))
    assert document["openapi"].startswith("3.1")
    operation = document["paths"]["/api#divide"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
    }
    assert set(operation["responses"]) == {"200", "400", "404", "413", "422", "500"}
    error_schema = document["components"]["schemas"]["Error"]
    # What /api really sends for 422, 404 and 400 fits the documented Error.
    for reply in (
        await api_call(client, port, "divide", 1, 0),
        await api_call(client, port, "nope"),
        await client.post(port, "/api", data=b"[]", headers=JSON_HEADERS),
    ):
        body = json.loads(reply.body)
        assert str(reply.status) in operation["responses"]
        assert set(body) <= set(error_schema["properties"]) and "error" in body
    bad = await client.get(port, "/api/openapi.json?dialect=xml")
    assert bad.status == 400 and "dialect" in bad.text


@pytest_twisted.ensureDeferred
async def test_calls_that_fit_the_documented_json_body_are_ones_api_accepts(serve, client):
    seen: list[Any] = []
    houweb.apiFunction("k")(kitchen_sink)
    houweb.apiFunction("k")(lambda request, a, *more, b=0: seen.append((a, more, b)))
    register_examples(seen)
    port = (await serve()).port_numbers()[0]
    document = await get_json(client, port, "/api/openapi.json")

    def schema(name):
        content = document["paths"][operation_path(name)]["post"]["requestBody"]["content"]
        return jsonschema.Draft202012Validator(content["application/json"]["schema"])

    fitting = [
        ["k.kitchen_sink", [1, "n", 2.5], {"c": [1], "flag": True, "more": "x"}],
        ["k.<lambda>", [1, 2, 3], {"b": 4}],
        ["divide", [], {"a": 6, "b": 3}],
        ["geo.vector_length", [], {"x": 1, "y": 2, "z": 3}],
    ]
    for call in fitting:
        schema(call[0]).validate(call)
        reply = await client.post(
            port, "/api", data=json.dumps(call).encode(), headers=JSON_HEADERS
        )
        assert reply.status == 200, (call, reply.text)
    assert seen == [(1, (2, 3), 4), ("divide", 6, 3), ("vector_length", 1.0, 2.0, 3.0)]
    not_fitting = [
        ["divide", [], {"b": 3}],
        ["divide", [6], {}],
        ["divide", [], {"a": "six"}],
        ["k.kitchen_sink", [], {"a": 1, "b": "n"}],
    ]
    for call in not_fitting:
        assert not schema(call[0]).is_valid(call), call


def _generate_and_call(workdir: str, port: int) -> str:
    """Generate a client with openapi-python-client; run a script using it."""
    generated = subprocess.run(
        [
            sys.executable, "-m", "openapi_python_client", "generate",
            "--path", "openapi.json", "--meta", "none", "--output-path", "houweb_client",
        ],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stdout + generated.stderr
    script = textwrap.dedent(
        """
        import importlib, json, sys
        from houweb_client import Client, models
        client = Client(base_url=f"http://127.0.0.1:{sys.argv[1]}")
        operation = importlib.import_module("houweb_client.api.geo.geo_vector_length")
        body_type = next(getattr(models, n) for n in dir(models) if n.startswith("GeoVectorLength"))
        result = operation.sync(
            client=client,
            body=["geo.vector_length", [], body_type.from_dict({"x": 1, "y": 2, "z": 3})],
        )
        divide = importlib.import_module("houweb_client.api.default.divide")
        divide_type = next(getattr(models, n) for n in dir(models) if n.startswith("Divide"))
        error = divide.sync(client=client, body=["divide", [], divide_type.from_dict({"a": 1, "b": 0})])
        print(json.dumps([result, error.error]))
        """
    )
    called = subprocess.run(
        [sys.executable, "-c", script, str(port)],
        cwd=workdir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert called.returncode == 0, called.stdout + called.stderr
    return called.stdout


@pytest_twisted.ensureDeferred
async def test_a_client_generated_by_openapi_python_client_calls_a_function(
    serve, client, tmp_path
):
    seen: list[Any] = []
    register_examples(seen)
    port = (await serve()).port_numbers()[0]
    # openapi-python-client builds a broken method for an operation with two
    # request bodies, so it gets the JSON-body dialect alone.
    reply = await client.get(port, "/api/openapi.json?dialect=json")
    (tmp_path / "openapi.json").write_bytes(reply.body)
    output = await threads.deferToThread(_generate_and_call, str(tmp_path), port)
    assert json.loads(output.strip().splitlines()[-1]) == [14**0.5, "b must not be 0"]
    assert seen == [("vector_length", 1.0, 2.0, 3.0), ("divide", 1, 0)]


# Ports, token, the switch, the paths.


@pytest_twisted.ensureDeferred
async def test_a_function_bound_to_another_port_is_not_described_on_the_main_port(serve, client):
    server = await serve(ports=[0])
    main, extra = server.port_numbers()
    register_examples([])
    houweb.apiFunction("hidden", ports=[extra])(lambda request: "secret")
    for port, expected in ((main, False), (extra, True)):
        document = await get_json(client, port, "/api/openapi.json")
        module = (await client.get(port, "/api/client.js")).text
        types = (await client.get(port, "/api/client.d.ts")).text
        listed = json.loads((await api_call(client, port, "houweb.functions")).body)
        assert ("/api#hidden.%3Clambda%3E" in document["paths"]) is expected
        assert ('"<lambda>": APIFunction<[]' in types) is expected
        assert (
            "hidden.<lambda>" in [f["name"] for f in client_module_functions(module)]
        ) is expected
        assert ("hidden.<lambda>" in [f["name"] for f in listed]) is expected


@pytest_twisted.ensureDeferred
async def test_the_descriptions_need_the_token_like_everything_else(serve, client):
    register_examples([])
    port = (await serve(token="s3cret")).port_numbers()[0]
    for path in VIEW_PATHS:
        reply = await client.get(port, path)
        assert reply.status == 401 and "divide" not in reply.text
    authorized = {"Authorization": ["Bearer s3cret"]}
    document = await get_json(client, port, "/api/openapi.json", headers=authorized)
    validate(document)
    assert document["security"] == [{"token": []}]
    assert "Error401" in document["components"]["responses"]
    for path in VIEW_PATHS:
        assert (await client.get(port, path, headers=authorized)).status == 200


@pytest_twisted.ensureDeferred
async def test_api_docs_false_turns_every_description_off_but_not_api(serve, client):
    register_examples([])
    port = (await serve(settings={"API_DOCS": False})).port_numbers()[0]
    for path in VIEW_PATHS:
        assert (await client.get(port, path)).status == 404
    assert (await api_call(client, port, "houweb.functions")).status == 404
    reply = await api_call(client, port, "divide", 6, 3)
    assert (reply.status, json.loads(reply.body)) == (200, 2.0)


@pytest_twisted.ensureDeferred
async def test_api_docs_must_be_true_or_false(serve):
    with pytest.raises(houweb.OperationFailed, match="API_DOCS must be True or False"):
        await serve(settings={"API_DOCS": "no"})


def test_no_handler_can_take_the_description_paths(registry):
    for path in [*VIEW_PATHS, "/api/docs/"]:
        with pytest.raises(ValueError, match="reserved"):
            houweb.urlHandler(path)


@pytest_twisted.ensureDeferred
async def test_no_prefix_handler_or_static_directory_shadows_api_or_its_descriptions(
    serve, client, tmp_path
):
    register_examples([])
    houweb.urlHandler("/", is_prefix=True)(lambda request: houweb.Response("catch-all"))
    (tmp_path / "docs").write_text("a static file")
    (tmp_path / "other").write_text("a static file")
    houweb.registerStaticFilesDirectory(str(tmp_path), "/api/docs")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/api/docs/other")).text == "a static file"
    assert (await client.get(port, "/api/docs")).text != "catch-all"
    assert (await get_json(client, port, "/api/openapi.json"))["openapi"].startswith("3.1")
    assert (await client.get(port, "/api/other")).text == "catch-all"
    reply = await api_call(client, port, "divide", 6, 3)
    assert (reply.status, reply.body) == (200, b"2.0")
    post = await client.post(port, "/api/docs", data=b"")
    assert post.status == 405 and post.header("Allow") == "GET, HEAD"
    head = await client.request("HEAD", port, "/api/openapi.json")
    assert (head.status, head.body, head.header("Content-Type")) == (200, b"", "application/json")


# In a browser.


@pytest.fixture
def browser():
    chromium = chromium_or_skip()
    with Browser(chromium) as opened:
        yield opened


def in_browser(function, *args):
    return threads.deferToThread(function, *args)


WAIT_READY = """
new Promise((resolve) => {
  if (document.body.dataset.ready) return resolve(true);
  new MutationObserver((_, observer) => {
    if (document.body.dataset.ready) { observer.disconnect(); resolve(true); }
  }).observe(document.body, { attributes: true });
})
"""


def fill_and_call(name: str, values: dict[str, str]) -> str:
    """JavaScript: fill the explorer's form of ``name``, press Call, await the answer."""
    return f"""
(async () => {{
  const section = document.getElementById({json.dumps("fn-" + name)});
  for (const [field, value] of Object.entries({json.dumps(values)})) {{
    section.querySelector(`[name="${{field}}"]`).value = value;
  }}
  const answer = section.querySelector("pre.answer");
  const settled = new Promise((resolve) => new MutationObserver((_, observer) => {{
    if (["done", "failed"].includes(answer.dataset.state)) {{ observer.disconnect(); resolve(); }}
  }}).observe(answer, {{ attributes: true }}));
  section.querySelector("button").click();
  await settled;
  return {{ state: answer.dataset.state, status: answer.dataset.status || null, text: answer.textContent }};
}})()
"""


@pytest_twisted.ensureDeferred
async def test_the_explorer_page_calls_a_function_and_shows_the_422_message(serve, browser):
    seen: list[Any] = []
    register_examples(seen)
    port = (await serve()).port_numbers()[0]
    await in_browser(browser.goto, f"http://127.0.0.1:{port}/api/docs")
    await in_browser(browser.evaluate, WAIT_READY)
    titles = await in_browser(
        browser.evaluate,
        "[...document.querySelectorAll('section h2')].map(h => h.firstChild.textContent)",
    )
    assert titles == ["divide", "files.upper", "geo.vector_length"]
    docs = await in_browser(browser.evaluate, "document.getElementById('fn-divide').textContent")
    assert "Divide a by b." in docs

    done = await in_browser(browser.evaluate, fill_and_call("divide", {"a": "6", "b": "3"}))
    assert done == {"state": "done", "status": None, "text": "2"}
    assert seen == [("divide", 6, 3)]

    failed = await in_browser(browser.evaluate, fill_and_call("divide", {"a": "6", "b": "0"}))
    assert failed == {"state": "failed", "status": "422", "text": "422: b must not be 0"}
    missing = await in_browser(browser.evaluate, fill_and_call("divide", {"a": "", "b": "2"}))
    assert missing["status"] == "422"
    assert missing["text"] == "422: divide: missing a required argument: 'a'"
    assert seen == [("divide", 6, 3), ("divide", 6, 0)]


@pytest_twisted.ensureDeferred
async def test_the_explorer_page_uploads_a_chosen_file_and_offers_the_bytes_answer(
    serve, browser, tmp_path
):
    seen: list[Any] = []
    register_examples(seen)
    port = (await serve()).port_numbers()[0]
    chosen = tmp_path / "chosen.txt"
    chosen.write_bytes(b"abcd")
    await in_browser(browser.goto, f"http://127.0.0.1:{port}/api/docs")
    await in_browser(browser.evaluate, WAIT_READY)
    await in_browser(browser.set_files, '[id="fn-files.upper"] input[type=file]', [str(chosen)])
    done = await in_browser(browser.evaluate, fill_and_call("files.upper", {"suffix": "!"}))
    assert done == {
        "state": "done",
        "status": None,
        "text": "5 bytes (application/octet-stream) download",
    }
    assert seen == [("upper", b"abcd", "!")]
    downloaded = await in_browser(
        browser.evaluate,
        """fetch(document.querySelector('[id="fn-files.upper"] pre.answer a').href)
             .then(r => r.text())""",
    )
    assert downloaded == "ABCD!"


@pytest_twisted.ensureDeferred
async def test_client_js_calls_functions_from_a_page_houweb_serves(serve, browser):
    seen: list[Any] = []
    register_examples(seen)
    houweb.urlHandler("/app")(
        lambda request: houweb.Response("<!DOCTYPE html><title>app</title><p>app</p>")
    )
    port = (await serve()).port_numbers()[0]
    await in_browser(browser.goto, f"http://127.0.0.1:{port}/app")
    results = await in_browser(
        browser.evaluate,
        """
(async () => {
  const { api, call, APIError } = await import("/api/client.js");
  const length = await api.geo.vector_length(1, 2, 3);
  const quarter = await api.divide.kw({ a: 1, b: 4 });
  const blob = await api.files.upper(new File(["abc"], "a.txt"), "!");
  const errors = [];
  for (const attempt of [() => api.divide(1, 0), () => call("nope")]) {
    try { await attempt(); errors.push(null); }
    catch (e) { errors.push([e instanceof APIError, e.status, e.message]); }
  }
  return { length, quarter, blob: [blob instanceof Blob, blob.type, await blob.text()], errors };
})()
""",
    )
    assert results == {
        "length": 14**0.5,
        "quarter": 0.25,
        "blob": [True, "application/octet-stream", "ABC!"],
        "errors": [[True, 422, "b must not be 0"], [True, 404, "unknown API function 'nope'"]],
    }
    assert seen == [
        ("vector_length", 1.0, 2.0, 3.0),
        ("divide", 1, 4),
        ("upper", b"abc", "!"),
        ("divide", 1, 0),
    ]


def test_a_missing_chromium_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("PATH", os.devnull)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser tests"):
        chromium_or_skip()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        chromium_or_skip()


class _RaisingMeta(type):
    def __eq__(cls, other):
        raise RuntimeError("this annotation cannot be compared")

    __hash__ = type.__hash__


class Incomparable(metaclass=_RaisingMeta):
    """An annotation that raises when the describer compares it with a type."""


@pytest_twisted.ensureDeferred
async def test_one_function_the_describer_cannot_read_does_not_break_the_others(
    serve, client, logged
):
    register_examples([])

    def listed(request, shape, options):
        """Annotated with values that cannot be hashed (a list, a dict)."""
        return shape

    listed.__annotations__ = {"shape": [int], "options": {"type": "string"}, "return": [str]}
    houweb.apiFunction()(listed)

    def odd(request, thing):
        return None

    odd.__annotations__ = {"thing": Incomparable}  # not a string to resolve
    houweb.apiFunction()(odd)

    port = (await serve()).port_numbers()[0]
    document = await get_json(client, port, "/api/openapi.json")
    validate(document)
    assert {"/api#divide", "/api#listed", "/api#odd"} <= set(document["paths"])
    functions = json.loads((await api_call(client, port, "houweb.functions")).body)
    by_name = {f["name"]: f for f in functions}
    assert by_name["listed"]["parameters"]["properties"] == {"shape": {}, "options": {}}
    assert by_name["divide"]["parameters"]["required"] == ["a"]
    # odd cannot be read: described as taking and giving anything, and logged.
    assert by_name["odd"]["parameters"]["additionalProperties"] is True
    assert by_name["odd"]["signature"] == "(thing: tests.test_api_docs.Incomparable)"
    assert "cannot describe API function odd" in messages(logged)
    for path in VIEW_PATHS:
        assert (await client.get(port, path)).status == 200, path


@pytest_twisted.ensureDeferred
async def test_a_listen_address_of_the_main_port_describes_what_it_serves(serve, client):
    register_examples([])
    houweb.apiFunction("hidden", ports=[9])(lambda request: "elsewhere")
    server = await serve(listen=["tcp:0:interface=127.0.0.1"])
    main, alias = server.port_numbers()
    reply = await api_call(client, alias, "divide", 6, 3)
    assert (reply.status, reply.body) == (200, b"2.0")  # /api answers there...
    for port in (main, alias):  # ...and every view lists what it answers
        document = await get_json(client, port, "/api/openapi.json")
        assert sorted(document["paths"]) == [
            "/api#divide",
            "/api#files.upper",
            "/api#geo.vector_length",
        ]
        module = (await client.get(port, "/api/client.js")).text
        assert [f["name"] for f in client_module_functions(module)] == [
            "divide",
            "files.upper",
            "geo.vector_length",
        ]
        assert "vector_length: APIFunction" in (await client.get(port, "/api/client.d.ts")).text


class StuckConverter:
    """An ``arg_types`` converter whose hash (the describer asks for it) waits for ``release``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.timed_out = False

    def __call__(self, value: Any) -> Any:
        return value

    def __hash__(self) -> int:
        self.entered.set()
        self.timed_out = not self.release.wait(10)
        return id(self)


@pytest_twisted.ensureDeferred
async def test_describing_the_functions_does_not_hold_up_other_requests(serve, client):
    """openapi.json, client.js and client.d.ts are built in the pool, not on the reactor."""
    register_examples([])
    for path in ("/api/openapi.json", "/api/client.js", "/api/client.d.ts"):
        stuck = StuckConverter()
        houweb.apiFunction(arg_types={"x": stuck})(lambda request, x: x)
        port = (await serve(max_num_threads=2)).port_numbers()[0]
        pending = defer.ensureDeferred(client.get(port, path))
        assert await threads.deferToThread(stuck.entered.wait, 10)
        reply = await api_call(client, port, "divide", 6, 3)  # answered meanwhile
        assert (reply.status, reply.body) == (200, b"2.0")
        stuck.release.set()
        assert (await pending).status == 200
        assert not stuck.timed_out, f"{path} held up the reactor"


HOSTILE = (
    "<img src=x onerror=\"fetch('/pwned/img')\"></script>"
    "<script>fetch('/pwned/script')</script>`${fetch('/pwned/template')}`"
)


def register_hostile(pwned: list[str]) -> None:
    """Functions whose names, docs, defaults, choices and errors are HTML and script."""

    @houweb.urlHandler("/pwned", is_prefix=True)
    def record(request):
        pwned.append(request.path())
        return houweb.Response("")

    def evil(request, a: Literal["<b onclick=fetch('/pwned/b')>b</b>", 2] = "a", b: str = HOSTILE):
        raise houweb.APIError(HOSTILE)

    evil.__doc__ = f"{HOSTILE}\n\n:param a: {HOSTILE}"
    evil.__name__ = "evil" + HOSTILE
    houweb.apiFunction("ns" + HOSTILE)(evil)
    houweb.apiFunction("__proto__")(lambda request: "not on Object.prototype")
    houweb.apiFunction("constructor.prototype")(lambda request: "not on Object")

    def then(request):
        return "reached through call()"

    houweb.apiFunction()(then)
    houweb.urlHandler("/app")(
        lambda request: houweb.Response("<!DOCTYPE html><title>app</title><p>app</p>")
    )


@pytest_twisted.ensureDeferred
async def test_hostile_names_and_docs_run_nothing_in_the_explorer(serve, browser):
    pwned: list[str] = []
    register_hostile(pwned)
    port = (await serve()).port_numbers()[0]
    await in_browser(browser.goto, f"http://127.0.0.1:{port}/api/docs")
    assert await in_browser(browser.evaluate, WAIT_READY)
    evil = "ns" + HOSTILE + ".evil" + HOSTILE
    failed = await in_browser(browser.evaluate, fill_and_call(evil, {}))
    assert failed == {"state": "failed", "status": "422", "text": "422: " + HOSTILE}
    markup = await in_browser(
        browser.evaluate, "document.querySelectorAll('img, b, script:not([type=module])').length"
    )
    assert markup == 0
    # The last request the page made was the call: had any injected fetch run, it came before.
    assert pwned == []


@pytest_twisted.ensureDeferred
async def test_client_js_names_are_own_keys_that_pollute_nothing(serve, browser):
    pwned: list[str] = []
    register_hostile(pwned)
    port = (await serve()).port_numbers()[0]
    await in_browser(browser.goto, f"http://127.0.0.1:{port}/app")
    results = await in_browser(
        browser.evaluate,
        """
(async () => {
  const { api, call } = await import("/api/client.js");
  return {
    polluted: "<lambda>" in {},
    proto: await api.__proto__["<lambda>"](),
    prototype: await api.constructor.prototype["<lambda>"](),
    objectUntouched: Object.prototype.constructor === Object && !("<lambda>" in Object),
    awaited: (await (async () => api)()) === api,
    then: [typeof api.then, await call("then")],
  };
})()
""",
    )
    assert results == {
        "polluted": False,
        "proto": "not on Object.prototype",
        "prototype": "not on Object",
        "objectUntouched": True,
        "awaited": True,
        "then": ["undefined", "reached through call()"],
    }
    assert pwned == []


@pytest_twisted.ensureDeferred
async def test_the_explorer_runs_only_its_own_script(serve, client, browser):
    register_examples([])
    port = (await serve()).port_numbers()[0]
    policy = (await client.get(port, "/api/docs")).header("Content-Security-Policy")
    assert "'unsafe-inline'" not in policy and "'sha256-" in policy
    await in_browser(browser.goto, f"http://127.0.0.1:{port}/api/docs")
    assert await in_browser(browser.evaluate, WAIT_READY)  # its own script ran
    ran = await in_browser(
        browser.evaluate,
        """
(() => {
  const injected = document.createElement("script");
  injected.textContent = "window.injectedRan = true";
  document.body.append(injected);  // an inline script runs as it is inserted, if allowed
  return window.injectedRan === true;
})()
""",
    )
    assert ran is False


@pytest_twisted.ensureDeferred
async def test_the_explorer_sends_defaults_not_null_for_positions_left_empty(serve, browser):
    seen: list[Any] = []

    @houweb.apiFunction()
    def slashed(request, a: int = 1, b: int = 2, /):
        seen.append(("slashed", a, b))
        return [a, b]

    @houweb.apiFunction()
    def starred(request, a: int, b: int = 5, *rest: int):
        seen.append(("starred", a, b, rest))
        return [a, b, list(rest)]

    @houweb.apiFunction()
    def needed(request, a: int, b: int, /):
        seen.append(("needed", a, b))

    port = (await serve()).port_numbers()[0]
    await in_browser(browser.goto, f"http://127.0.0.1:{port}/api/docs")
    assert await in_browser(browser.evaluate, WAIT_READY)
    done = await in_browser(browser.evaluate, fill_and_call("slashed", {"b": "3"}))
    assert (done["state"], json.loads(done["text"])) == ("done", [1, 3])
    done = await in_browser(browser.evaluate, fill_and_call("starred", {"a": "1", "rest": "[7]"}))
    assert (done["state"], json.loads(done["text"])) == ("done", [1, 5, [7]])
    failed = await in_browser(browser.evaluate, fill_and_call("needed", {"b": "3"}))
    assert failed["state"] == "failed"
    assert failed["text"] == "a must be given too: none can be skipped before one given by position"
    assert seen == [("slashed", 1, 3), ("starred", 1, 5, (7,))]


@pytest_twisted.ensureDeferred
async def test_the_explorer_takes_only_an_object_for_keyword_arguments(serve, browser):
    seen: list[Any] = []

    @houweb.apiFunction()
    def options(request, **more):
        seen.append(more)
        return sorted(more)

    port = (await serve()).port_numbers()[0]
    await in_browser(browser.goto, f"http://127.0.0.1:{port}/api/docs")
    assert await in_browser(browser.evaluate, WAIT_READY)
    failed = await in_browser(browser.evaluate, fill_and_call("options", {"more": "abc"}))
    assert failed["state"] == "failed"
    assert failed["text"] == 'more must be a JSON object, such as {"name": 1}'
    done = await in_browser(browser.evaluate, fill_and_call("options", {"more": '{"b": 1}'}))
    assert (done["state"], json.loads(done["text"])) == ("done", ["b"])
    assert seen == [{"b": 1}]  # not {"0": "a", "1": "b", "2": "c"}


@pytest_twisted.ensureDeferred
async def test_any_function_name_gives_a_valid_document_the_views_agree_on(serve, client):
    register_hostile([])  # braces in names (a path template in OpenAPI), <lambda>, HTML
    houweb.apiFunction("geo {v2}")(lambda request, x: x)
    port = (await serve()).port_numbers()[0]
    names = await assert_views_agree(client, port)  # validates the document too
    assert "geo {v2}.<lambda>" in names
    for dialect in DIALECTS:
        validate(await get_json(client, port, f"/api/openapi.json?dialect={dialect}"))


def test_client_d_ts_labels_no_argument_with_a_reserved_word(registry):
    # "delete?: unknown" in a tuple type is a syntax error that breaks the
    # whole file for tsc and editors (checked with tsc 5).
    @houweb.apiFunction()
    def defaults(request, delete=1, new=2, *this):
        pass

    @houweb.apiFunction()
    def clash(request, arg1, é, /):
        pass

    types = declarations([describe(registry.function(n, 0, 0)) for n in ("defaults", "clash")])
    assert (
        "defaults: APIFunction<[arg0?: unknown, arg1?: unknown, ...arg2: Array<unknown>], "
        "{ delete?: unknown; new?: unknown }, unknown>;"
    ) in types
    assert "clash: APIFunction<[arg1: unknown, arg1_: unknown]" in types
