"""
API functions: :func:`api_function` (``apiFunction``) registers Python functions that clients
call through ``POST /api``, and :func:`answer_api` answers those calls
(for :class:`~houweb._registry.APIEndpoint`, which answers for itself).

How a call is spelled on the wire and how results are encoded lives in
``_api_wire``; this module binds arguments, runs the function (in the pool,
or on the reactor when it is ``async def``) and turns what happens into the
documented status codes (spec §13.5).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ._api_wire import CallError, ResultError, encode_result, parse_call
from ._bindings import Ports, normalize_ports, sorted_bindings
from ._dispatch import describe, format_traceback, is_async, let_go_of_locals
from ._request import Request
from ._response import Response, json_error

if TYPE_CHECKING:  # for the hints: the registry's /api endpoint imports this module
    from ._registry import Registry
    from ._site import Call

log = Logger(namespace="houweb")

F = TypeVar("F", bound=Callable[..., Any])

#: The namespace of houweb's own API functions; users may not register in it.
RESERVED_NAMESPACE = "houweb"
INTROSPECTION = RESERVED_NAMESPACE + ".functions"


class APIError(Exception):
    """
    Raise in an API function to answer 422 with ``{"error": msg}``.

    :param msg: a string, or any JSON-encodable value (sent as an object).
    """

    def __init__(self, msg: object = "") -> None:
        super().__init__(msg)

    @property
    def message(self) -> object:
        """The value sent as ``"error"``."""
        return self.args[0] if self.args else ""


class ArgumentError(TypeError):
    """The client's arguments do not fit the function (answered with 422)."""


@dataclass(frozen=True)
class APIFunctionTarget:
    """A function registered with :func:`apiFunction`, as the registry holds it."""

    name: str
    function: Callable[..., Any]
    signature: inspect.Signature
    return_binary: bool = False
    arg_types: Mapping[str, Callable[[Any], Any]] | None = None
    ports: tuple[int | str, ...] = (0,)

    def __str__(self) -> str:
        return f"API function {self.name} ({describe(self.function)})"

    def bind(
        self, request: Request, args: list[Any], kwargs: dict[str, Any]
    ) -> inspect.BoundArguments:
        """
        :returns: the arguments of the call, the Request first.
        :raises ArgumentError: when they do not fit the signature.
        """
        try:
            return self.signature.bind(request, *args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"{self.name}: {exc}") from None

    def convert(self, bound: inspect.BoundArguments) -> None:
        """Apply ``arg_types`` to the bound arguments (user code: not on the reactor)."""
        if not self.arg_types:
            return
        holders = _holders(bound, self.signature)
        for name, argument_type in self.arg_types.items():
            for values in holders:
                if name in values:
                    values[name] = _converted(name, values[name], argument_type)


def _holders(bound: inspect.BoundArguments, signature: inspect.Signature) -> list[dict[str, Any]]:
    """The dicts an argument may sit in: the bound names, and a ``**kwargs``."""
    holders: list[dict[str, Any]] = [bound.arguments]
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD and parameter.name in bound.arguments:
            holders.append(bound.arguments[parameter.name])
    return holders


def _converted(name: str, value: object, argument_type: Callable[[Any], Any]) -> Any:
    try:
        return argument_type(value)
    except Exception:  # noqa: BLE001 - any failure to convert is the client's 422
        type_name = getattr(argument_type, "__name__", repr(argument_type))
        raise ArgumentError(
            f"argument {name!r}: cannot convert {value!r} with {type_name}"
        ) from None


def api_function(
    registry: Registry,
    namespace: str | None = None,
    return_binary: bool = False,
    arg_types: Mapping[str, Callable[[Any], Any]] | None = None,
    ports: Ports = [],
) -> Callable[[F], F]:
    """
    :returns: a decorator registering a function into ``registry`` as an API
        function: see :func:`houweb.apiFunction`, which is this on the
        default server's registry.
    """
    if callable(namespace):
        raise TypeError(
            "apiFunction must be called: write @apiFunction() or @apiFunction('namespace')"
        )
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, not {type(namespace).__name__}")
    if namespace == RESERVED_NAMESPACE:
        raise ValueError(f"the API namespace {RESERVED_NAMESPACE!r} is reserved for houweb")
    if arg_types is not None and not all(callable(t) for t in arg_types.values()):
        raise TypeError("arg_types must map parameter names to callables")
    bindings = normalize_ports(ports)

    def register(function: F) -> F:
        if not callable(function):
            raise TypeError("apiFunction decorates a function")
        name = f"{namespace}.{function.__name__}" if namespace else function.__name__
        target = APIFunctionTarget(
            name,
            function,
            inspect.signature(function),
            bool(return_binary),
            dict(arg_types) if arg_types else None,
            tuple(sorted_bindings(bindings)),
        )
        registry.add_function(name, list(bindings), target)
        return function

    return register


def answer_api(call: Call) -> Response | Deferred[Response]:
    """
    Answer one ``/api`` request. Everything that grows with the payload runs
    in the pool, never on the reactor: decoding the call (JSON or form),
    and for a plain function the call itself and the encoding of its result,
    all in one pool job. An ``async def`` function then runs on the reactor
    and its result is encoded in the pool.
    """
    if call.request.method() != "POST":
        response = json_error("API functions must be called with POST", 405)
        response.setHeader("Allow", "POST")
        return response
    called = _Called()
    d = call.run(_answer_in_pool, call, called, shown_as=called)
    # The answer of a call that raised is a Response, as _then_async's is.
    d.addCallbacks(_then_async, _failure_response, callbackArgs=(call,), errbackArgs=(call, called))
    return d


class _Called:
    """What names an ``/api`` call at shutdown: the function, once the call is decoded."""

    target: APIFunctionTarget | None = None

    def __str__(self) -> str:
        return str(self.target) if self.target is not None else "an /api call being decoded"


@dataclass(frozen=True)
class _OnReactor:
    """An ``async def`` function to run on the reactor, its arguments bound."""

    target: APIFunctionTarget
    bound: inspect.BoundArguments


def _answer_in_pool(call: Call, called: _Called) -> Response | _OnReactor:
    """
    In a pool thread: decode the call, find and bind the function; run a
    plain one and encode its result.

    :returns: the answer, or what must run on the reactor.
    """
    request = call.request
    try:
        api_call = parse_call(request, call.context.settings.data_upload_max_memory_size)
    except CallError as exc:
        return json_error(str(exc), exc.status)
    target = _find(call, api_call.name)
    if target is None:
        return json_error(f"unknown API function {api_call.name!r}", 404)
    called.target = target
    try:
        bound = target.bind(request, api_call.args, api_call.kwargs)
    except ArgumentError as exc:
        return json_error(str(exc), 422)
    if is_async(target.function):
        return _OnReactor(target, bound)
    return encode_result(
        _invoke(target, bound),
        target.name,
        target.return_binary,
        call.context.small_first.large_result,
    )


def _then_async(outcome: Response | _OnReactor, call: Call) -> Response | Deferred[Response]:
    """Run an ``async def`` function on the reactor, then encode its result in the pool."""
    if not isinstance(outcome, _OnReactor):
        return outcome
    target = outcome.target
    d = call.run(_invoke_async, target, outcome.bound, shown_as=target)
    d.addCallback(_encode_in_pool, call, target)
    d.addErrback(_failure_response, call, target)
    return d


def _encode_in_pool(result: object, call: Call, target: APIFunctionTarget) -> Deferred[Response]:
    """
    :returns: the answer for ``result``, encoded in a pool thread: a call
        in progress, as the function's was (a large result steps aside for
        the others, and they for it: see :class:`houweb._priority.SmallFirst`).
    """
    return call.run(
        encode_result,
        result,
        target.name,
        target.return_binary,
        call.context.small_first.large_result,
        shown_as=target,
    )


def call_function(
    call: Call, target: APIFunctionTarget, args: list[Any], kwargs: dict[str, Any]
) -> Deferred[Response]:
    """
    Call ``target`` as ``/api`` does, for another protocol (MCP tools): bind
    the arguments to ``call``'s Request, run the function (in the pool, or on
    the reactor if it is ``async def``), encode its result in the pool.

    :returns: a Deferred firing with the answer ``/api`` would send: the
        encoded result, or the JSON error (422 for an :class:`APIError` or
        arguments that do not fit, 500 for anything else, logged).
    """
    try:
        bound = target.bind(call.request, args, kwargs)
    except ArgumentError as exc:
        return succeed(json_error(str(exc), 422))
    invoke = _invoke_async if is_async(target.function) else _invoke
    d = call.run(invoke, target, bound, shown_as=target)
    d.addCallback(_encode_in_pool, call, target)
    d.addErrback(_failure_response, call, target)
    return d


def visible_function(call: Call, name: str) -> APIFunctionTarget | None:
    """:returns: the API function ``name`` as ``call``'s port shows it, or ``None``."""
    target = _find(call, name)
    return None if name == INTROSPECTION else target


def _find(call: Call, name: str) -> APIFunctionTarget | None:
    context = call.context
    if name == INTROSPECTION:
        return _introspection(call) if context.settings.api_docs else None
    target = context.registry.function(
        name, call.request.port(), context.main_port, context.main_aliases
    )
    return target if isinstance(target, APIFunctionTarget) else None


def _invoke(target: APIFunctionTarget, bound: inspect.BoundArguments) -> Any:
    target.convert(bound)
    return target.function(*bound.args, **bound.kwargs)


async def _invoke_async(target: APIFunctionTarget, bound: inspect.BoundArguments) -> Any:
    target.convert(bound)
    return await target.function(*bound.args, **bound.kwargs)


def _failure_response(failure: Failure, call: Call, target: object) -> Response:
    """The JSON error answer for a call that raised (spec §13.5)."""
    try:
        return _error_answer(failure, call, target)
    finally:
        # Whatever the answer, the frames of the call (which hold its Request
        # and uploads) must not live on with the failure, which a cycle of
        # Twisted's (inlineCallbacks) may keep until the garbage collector runs.
        let_go_of_locals(failure)


def _error_answer(failure: Failure, call: Call, target: object) -> Response:
    if failure.check(APIError):
        return json_error(failure.value.message, 422)  # type: ignore[union-attr]
    if failure.check(ArgumentError):
        return json_error(str(failure.value), 422)
    if failure.check(ResultError):
        log.error("houweb: {message}", message=str(failure.value))
        return json_error(str(failure.value), 500)
    log.failure("houweb: {what} raised an exception", failure, LogLevel.error, what=str(target))
    if not call.context.config.debug:
        return json_error("Internal server error", 500)
    exc = failure.value
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return json_error(message, 500, traceback=format_traceback(failure))


def _introspection(call: Call) -> APIFunctionTarget:
    """``houweb.functions``: the functions visible on this port (like system.listMethods)."""
    context = call.context

    def functions(request: Request) -> list[dict[str, Any]]:
        visible = context.registry.functions(
            request.port(), context.main_port, context.main_aliases
        )
        return [describe_function(visible[name]) for name in sorted(visible)]  # type: ignore[arg-type]

    return APIFunctionTarget(INTROSPECTION, functions, inspect.signature(functions))


def describe_function(target: APIFunctionTarget) -> dict[str, Any]:
    """
    :returns: what introspection tells of one function: from the same
        :func:`~houweb._describe.describe` as ``/api/openapi.json`` and
        ``/api/client.js``, its arguments' and result's JSON Schemas included.
    """
    from . import _describe  # on first use: a server need not describe itself to answer

    d = _describe.described(target)
    return {
        "name": d.name,
        "signature": d.signature,
        "doc": d.doc,
        "return_binary": d.return_binary,
        "ports": d.ports,
        "parameters": d.parameters,
        "result": d.result,
        "result_media_type": d.result_media_type,
    }
