"""
The describer: what one API function takes and gives, as JSON Schema 2020-12,
derived once from its signature, annotations, defaults, ``arg_types`` and
docstring. Every view of the functions (``houweb.functions``,
``/api/openapi.json``, ``/api/client.js``, ``/api/docs``) is built from
:func:`describe`, so they cannot disagree.

The arguments are described as one JSON object (name → value), which is what
a keyword call sends and what a tool-calling protocol (MCP's
``tools/list`` ``inputSchema``) wants as is. :class:`Description` also keeps
the order of the parameters and which of them can only be given by position
or as a file part, so a caller holding an object can build any ``/api`` call.

Nothing here imports the rest of houweb except through the target it is
given: it reads ``name``, ``function``, ``signature``, ``return_binary``,
``arg_types`` and ``ports`` (an :class:`~houweb._api.APIFunctionTarget`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from ._uploads import UploadedFile

_log = Logger(namespace="houweb")

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
JSON_TYPE = "application/json"
OCTET_STREAM = "application/octet-stream"
#: The schema of an uploaded file (a multipart part), in OpenAPI 3.1 spelling.
FILE_SCHEMA: dict[str, Any] = {"type": "string", "contentMediaType": OCTET_STREAM}

_Kind = inspect.Parameter


@dataclass(frozen=True)
class Description:
    """
    One API function, described.

    :ivar parameters: the JSON Schema (an object) of its arguments by name;
        ``**kwargs`` shows as ``additionalProperties``, ``*args`` as a
        property holding an array.
    :ivar order: the parameter names in signature order (the Request left
        out), for positional calls.
    :ivar positional_only: those that cannot be given by name.
    :ivar keyword_only: those that can only be given by name.
    :ivar var_positional: the name of ``*args``, if any.
    :ivar var_keyword: the name of ``**kwargs``, if any.
    :ivar files: parameters that arrive as uploaded files (multipart parts).
    :ivar result: the JSON Schema of a JSON result, ``{}`` when unknown, or
        ``None`` when the result is sent as bytes.
    :ivar result_media_type: ``application/json`` or ``application/octet-stream``.
    """

    name: str
    summary: str
    doc: str
    signature: str
    parameters: dict[str, Any]
    order: list[str]
    positional_only: list[str]
    keyword_only: list[str]
    var_positional: str | None
    var_keyword: str | None
    files: list[str]
    result: dict[str, Any] | None
    result_media_type: str
    return_binary: bool
    ports: list[int | str]

    @property
    def namespace(self) -> str:
        """``geo`` for ``geo.vector_length``; ``""`` without a namespace."""
        return self.name.rpartition(".")[0]

    def as_json(self) -> dict[str, Any]:
        """:returns: the description as a JSON-encodable dict (``/api/client.js`` embeds it)."""
        return dataclasses.asdict(self)


def describe(target: Any) -> Description:
    """
    :param target: an API function as the registry holds it.
    :returns: its :class:`Description`; one the describer cannot make sense
        of (an annotation that raises when compared...) is described as
        taking and giving anything, so one odd function cannot break the
        description of all the others.
    """
    try:
        return _describe(target)
    except Exception:  # noqa: BLE001 - any user object may raise
        _log.failure("houweb: cannot describe API function {name}", name=target.name)
        return _opaque(target)


def described(target: Any) -> Description:
    """
    :returns: :func:`describe` of ``target``, made once per registration
        (a target is immutable; a new registration is a new target) and kept
        on the target itself, so it lives as long as the registration.
    """
    found: Description | None = target.__dict__.get(_CACHED)
    if found is None:
        found = describe(target)
        object.__setattr__(target, _CACHED, found)  # frozen: not one of its fields
    return found


_CACHED = "_houweb_description"


def _opaque(target: Any) -> Description:
    """:returns: the description of a function that takes and gives anything."""
    try:
        parameters = list(target.signature.parameters.values())[1:]  # the Request left out
        signature = str(target.signature.replace(parameters=parameters))
    except Exception:  # noqa: BLE001
        signature = "(...)"
    return Description(
        name=target.name,
        summary="",
        doc="",
        signature=signature,
        parameters={
            "type": "object",
            "properties": {"args": {"type": "array", "items": {}}},
            "additionalProperties": True,
        },
        order=[],
        positional_only=[],
        keyword_only=[],
        var_positional="args",
        var_keyword="kwargs",
        files=[],
        result=None if target.return_binary else {},
        result_media_type=OCTET_STREAM if target.return_binary else JSON_TYPE,
        return_binary=bool(target.return_binary),
        ports=list(target.ports),
    )


def _describe(target: Any) -> Description:
    function = target.function
    parameters = list(target.signature.parameters.values())[1:]
    hints = _hints(function)
    doc = inspect.getdoc(function) or ""
    prose, param_docs, returns_doc = _split_doc(doc)
    arg_types = target.arg_types or {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    files: list[str] = []
    var_positional = var_keyword = None
    additional: Any = False
    for parameter in parameters:
        annotation = hints.get(parameter.name, parameter.annotation)
        schema = _parameter_schema(annotation, arg_types.get(parameter.name))
        if schema is FILE_SCHEMA:
            files.append(parameter.name)
            schema = dict(FILE_SCHEMA)
        if parameter.name in param_docs:
            schema["description"] = param_docs[parameter.name]
        if parameter.kind is _Kind.VAR_POSITIONAL:
            var_positional = parameter.name
            properties[parameter.name] = {"type": "array", "items": schema}
            continue
        if parameter.kind is _Kind.VAR_KEYWORD:
            var_keyword = parameter.name
            additional = schema
            continue
        if parameter.default is _Kind.empty:
            required.append(parameter.name)
        elif _is_json(parameter.default):
            schema["default"] = parameter.default
        properties[parameter.name] = schema
    arguments: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        arguments["required"] = required
    arguments["additionalProperties"] = additional
    result, media_type = _result(target, hints.get("return", target.signature.return_annotation))
    if result is not None and returns_doc:
        result = {**result, "description": returns_doc}
    return Description(
        name=target.name,
        summary=prose.split("\n\n", 1)[0].replace("\n", " ").strip(),
        doc=doc,
        signature=str(target.signature.replace(parameters=parameters)),
        parameters=arguments,
        order=[
            p.name for p in parameters if p.kind not in (_Kind.VAR_POSITIONAL, _Kind.VAR_KEYWORD)
        ],
        positional_only=[p.name for p in parameters if p.kind is _Kind.POSITIONAL_ONLY],
        keyword_only=[p.name for p in parameters if p.kind is _Kind.KEYWORD_ONLY],
        var_positional=var_positional,
        var_keyword=var_keyword,
        files=files,
        result=result,
        result_media_type=media_type,
        return_binary=bool(target.return_binary),
        ports=list(target.ports),
    )


def _hints(function: Any) -> dict[str, Any]:
    """Annotations with strings (``from __future__ import annotations``) resolved where possible."""
    try:
        return typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - an unresolvable name: fall back to the raw annotations
        return dict(getattr(function, "__annotations__", {}) or {})


def _is_json(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except Exception:  # noqa: BLE001 - TypeError, ValueError, RecursionError, a user's own
        return False
    return True


def _simple(annotation: Any) -> dict[str, Any] | None:
    """:returns: the schema of a plain type; ``None`` for others (unhashable ones too: ``x: [int]``)."""
    try:
        simple = _SIMPLE.get(annotation)
    except TypeError:
        return None
    return None if simple is None else dict(simple)


def _parameter_schema(annotation: Any, argument_type: Any) -> dict[str, Any]:
    """
    What the client sends for one parameter. With ``arg_types`` the client
    sends what the converter takes, so a converter that is a type of its own
    (``float``) names it; another callable leaves the value open and says so.
    """
    if argument_type is not None:
        simple = _simple(argument_type)
        if simple is not None:
            return simple
        name = getattr(argument_type, "__name__", repr(argument_type))
        return {"description": f"converted with {name}"}
    return schema_of(annotation)


_SIMPLE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    dict: {"type": "object"},
}


def schema_of(annotation: Any) -> dict[str, Any]:
    """
    :returns: the JSON Schema of a value annotated ``annotation``; ``{}``
        (anything) for what JSON cannot say (no annotation, ``Any``, a
        class). An :class:`~houweb.UploadedFile` gives :data:`FILE_SCHEMA`
        itself, so the caller can tell it is a file.
    """
    if annotation is _Kind.empty or annotation is Any or isinstance(annotation, str):
        return {}
    if annotation is None:
        return {"type": "null"}
    if annotation is UploadedFile:
        return FILE_SCHEMA
    if annotation in (bytes, bytearray, memoryview):
        # What a JSON call can carry for it (the function then gets a str);
        # only an UploadedFile parameter is a file part, only a result bytes.
        return {"type": "string"}
    simple = _simple(annotation)
    if simple is not None:
        return simple
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [member.value for member in annotation]
        return {"enum": values} if all(_is_json(v) for v in values) else {}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return schema_of(args[0])
    if origin is typing.Literal:
        return {"enum": list(args)} if all(_is_json(v) for v in args) else {}
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        options = [schema_of(arg) for arg in args]
        if FILE_SCHEMA in options and all(
            o is FILE_SCHEMA or o == {"type": "null"} for o in options
        ):
            return FILE_SCHEMA  # Optional[UploadedFile]: a file part that may be left out
        if any(option == {} or option is FILE_SCHEMA for option in options):
            return {}
        return {"anyOf": options}
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable, set, frozenset):
        return {"type": "array", "items": schema_of(args[0])} if args else {"type": "array"}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_of(args[0])}
        if args:
            items = [schema_of(arg) for arg in args]
            return {
                "type": "array",
                "prefixItems": items,
                "minItems": len(items),
                "maxItems": len(items),
            }
        return {"type": "array"}
    if origin in (dict, collections.abc.Mapping):
        if args and args[0] is str:
            return {"type": "object", "additionalProperties": schema_of(args[1])}
        return {"type": "object"}
    return {}


def _result(target: Any, annotation: Any) -> tuple[dict[str, Any] | None, str]:
    """:returns: the result's schema (``None`` for bytes) and media type."""
    if target.return_binary or annotation in (bytes, bytearray, memoryview):
        return None, OCTET_STREAM
    schema = schema_of(annotation)
    return (schema if schema is not FILE_SCHEMA else {}), JSON_TYPE


_FIELD = re.compile(r"^:(param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?(\w+):\s*(.*)$")
_RETURNS = re.compile(r"^:(returns?|return):\s*(.*)$")


def _split_doc(doc: str) -> tuple[str, dict[str, str], str]:
    """
    Split a docstring into its prose, its Sphinx ``:param name:`` texts and
    its ``:returns:`` text (continuation lines are indented).
    """
    prose: list[str] = []
    params: dict[str, str] = {}
    returns: list[str] = []
    current: list[str] | None = None
    for line in doc.splitlines():
        param = _FIELD.match(line)
        result = _RETURNS.match(line)
        if param:
            current = [param.group(3)]
            params[param.group(2)] = current  # type: ignore[assignment]
        elif result:
            current = returns
            current.append(result.group(2))
        elif line.startswith(":"):
            current = []
        elif current is not None and line.startswith((" ", "\t")):
            current.append(line.strip())
        else:
            current = None
            prose.append(line)
    texts = {name: " ".join(parts).strip() for name, parts in params.items()}
    return "\n".join(prose).strip(), texts, " ".join(returns).strip()
