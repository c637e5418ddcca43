"""
The OpenAPI 3.1 document of the API functions visible on one port, built
from their :class:`~houweb._describe.Description` alone.

Every function is called through the same ``POST /api``, and OpenAPI allows
one POST per path, so each function gets the path ``/api#<name>``: the
fragment names the operation and is never sent (HTTP clients drop it), so
every generated call lands on ``/api``, the body naming the function as the
wire protocol says (spec §13.3). The request bodies are the protocol's own
dialects: the JSON body ``[name, args, kwargs]`` and the form field ``json``
holding the same array (urlencoded, or multipart with the file parts). The
error answers are the ones ``/api`` sends (§13.5).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ._describe import FILE_SCHEMA, JSON_SCHEMA_DIALECT, JSON_TYPE, OCTET_STREAM, Description

OPENAPI_VERSION = "3.1.0"
FORM_URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"

_ERRORS = {
    "400": "The request does not spell a call: no `json` or `cmd_function` field, "
    "JSON that is not `[name, args, kwargs]`, an unsupported Content-Type, a body "
    "that cannot be decoded, or a file part clashing with an argument.",
    "404": "No API function of that name on this port.",
    "413": "The request body is larger than the server's `max_request_size`.",
    "422": "The arguments do not fit the function, an `arg_types` conversion failed, "
    "or the function raised `APIError` (its message is the `error`).",
    "500": "The function raised another exception (`Internal server error`, or the "
    "exception and a `traceback` in debug mode), or its result cannot be sent.",
}


#: The request body dialects an operation can list (``?dialect=`` picks one).
DIALECTS = ("json", "form")


def openapi_document(
    descriptions: list[Description],
    title: str = "houweb API",
    token: bool = False,
    dialects: tuple[str, ...] = DIALECTS,
) -> dict[str, Any]:
    """
    :param descriptions: the functions to document, in the order to list them.
    :param token: the server requires ``Authorization: Bearer``: say so.
    :param dialects: the request bodies to list for functions without files:
        ``json`` (the JSON body) and ``form`` (the urlencoded field ``json``).
        Some generators (openapi-python-client) build a broken method for an
        operation with two request bodies; they are given one.
    :returns: the OpenAPI 3.1 document, JSON-encodable.
    """
    error_ref = {"$ref": "#/components/schemas/Error"}
    responses = {
        status: {"description": text, "content": {JSON_TYPE: {"schema": error_ref}}}
        for status, text in _ERRORS.items()
    }
    if token:
        responses["401"] = {
            "description": "The request lacks `Authorization: Bearer <token>`.",
            "content": {JSON_TYPE: {"schema": error_ref}},
        }
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "info": {
            "title": title,
            "version": "1",
            "description": "The API functions of this houweb server, called with "
            "`POST /api` (houweb's and Houdini's `/api` protocol). Each operation's "
            "path ends in `#<function name>`, which HTTP clients do not send: "
            "the function is named in the body.",
        },
        "paths": {operation_path(d.name): {"post": _operation(d, dialects)} for d in descriptions},
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "description": "What went wrong: a string, or the JSON "
                            "value an API function gave APIError."
                        },
                        "traceback": {
                            "type": "string",
                            "description": "The exception's traceback (debug mode only).",
                        },
                    },
                    "required": ["error"],
                }
            },
            "responses": {f"Error{status}": response for status, response in responses.items()},
        },
    }
    tags = sorted({d.namespace for d in descriptions if d.namespace})
    if tags:
        document["tags"] = [{"name": tag} for tag in tags]
    if token:
        document["components"]["securitySchemes"] = {"token": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"token": []}]
    return document


def operation_path(name: str) -> str:
    """
    :returns: ``/api#<name>``, the name percent-encoded where a URI fragment
        cannot hold it as is (``{`` and ``}`` would be read as a path
        parameter, ``<lambda>``'s brackets are not URI characters).
    """
    return "/api#" + quote(name, safe=_FRAGMENT_SAFE)


#: What RFC 3986 allows in a fragment besides letters, digits and ``%``,
#: less the ``{`` and ``}`` of OpenAPI's path templates (not in it anyway).
_FRAGMENT_SAFE = "!$&'()*+,;=:@/?-._~"


def _operation(d: Description, dialects: tuple[str, ...]) -> dict[str, Any]:
    call = call_schema(d)
    json_field = {
        "type": "string",
        "contentMediaType": JSON_TYPE,
        "contentSchema": call,
        "description": "The call as JSON: " + _example(d),
    }
    form = {"type": "object", "properties": {"json": json_field}, "required": ["json"]}
    multipart = {
        "type": "object",
        "properties": {"json": json_field, **{name: dict(FILE_SCHEMA) for name in d.files}},
        "required": [
            "json",
            *[name for name in d.files if name in d.parameters.get("required", [])],
        ],
    }
    # Files need a multipart body (the form field ``json`` and a part per
    # file); without files, the JSON body and the urlencoded form field.
    if d.files:
        content: dict[str, Any] = {MULTIPART: {"schema": multipart}}
    else:
        content = {}
        if "json" in dialects:
            content[JSON_TYPE] = {"schema": call}
        if "form" in dialects:
            content[FORM_URLENCODED] = {"schema": form}
    operation: dict[str, Any] = {
        "operationId": d.name,
        "summary": d.summary or d.name,
        "description": _operation_text(d),
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": _success(d),
            **{status: {"$ref": f"#/components/responses/Error{status}"} for status in _ERRORS},
        },
    }
    if d.namespace:
        operation["tags"] = [d.namespace]
    return operation


def _operation_text(d: Description) -> str:
    lines = [d.doc] if d.doc else []
    lines.append(f"Python signature: `{d.name}{d.signature}`.")
    lines.append(
        f"Call it with the JSON array {_example(d)} as the body (`application/json`) "
        "or as the form field `json`; or as the form fields `cmd_function="
        f"{d.name}` and one string field per argument."
    )
    if d.files:
        lines.append(
            "File arguments are multipart parts named after the parameter: "
            + ", ".join(f"`{name}`" for name in d.files)
            + "."
        )
    return "\n\n".join(lines)


def _example(d: Description) -> str:
    return f'`["{d.name}", [], {{...}}]`'


def _success(d: Description) -> dict[str, Any]:
    if d.result is None:
        return {
            "description": "The result, as bytes.",
            "content": {OCTET_STREAM: {"schema": dict(FILE_SCHEMA)}},
        }
    return {"description": "The result, as JSON.", "content": {JSON_TYPE: {"schema": d.result}}}


def call_schema(d: Description) -> dict[str, Any]:
    """
    :returns: the JSON Schema of the array ``[name, args, kwargs]`` that
        calls ``d`` with positional-only arguments in ``args`` (all before
        ``*args`` and its items, if it has one) and every other argument by
        name in ``kwargs``.
    """
    properties = d.parameters["properties"]
    # With *args, every parameter before it must be given by position too.
    if d.var_positional:
        by_position = [name for name in d.order if name not in d.keyword_only]
    else:
        by_position = d.positional_only
    positional = [properties[name] for name in by_position]
    required = d.parameters.get("required", [])
    args: dict[str, Any] = {"type": "array"}
    if positional:
        args["prefixItems"] = positional
        args["minItems"] = sum(1 for name in by_position if name in required)
    if d.var_positional:
        args["items"] = properties[d.var_positional].get("items", {})
    elif positional:
        args["items"] = False
    else:
        args["items"] = {}
        args["maxItems"] = 0
    by_name = set(by_position) | {d.var_positional} | set(d.files)
    kwargs: dict[str, Any] = {
        "type": "object",
        "properties": {name: s for name, s in properties.items() if name not in by_name},
    }
    kwargs_required = [name for name in required if name not in by_name]
    if kwargs_required:
        kwargs["required"] = kwargs_required
    kwargs["additionalProperties"] = d.parameters["additionalProperties"]
    return {
        "type": "array",
        "prefixItems": [{"const": d.name}, args, kwargs],
        "minItems": 3,
        "maxItems": 3,
    }
