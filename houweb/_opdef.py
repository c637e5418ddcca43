"""
``registerOpdefPath`` (:func:`register_opdef_path`): the URL prefix under which Houdini serves
node-type definition sections (``/opdef/obj/geo?Help``). houweb has no
Houdini scene, so the prefix answers 501 unless the application provides
the answers itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import Deferred

from . import _registry
from ._dispatch import as_response, describe
from ._request import Request
from ._response import Response, errorResponse
from ._site import Call
from ._target import Answer

Provider = Callable[[Request, str], Any]

NOT_IN_HOUDINI = "node-type help (opdef) is only available inside Houdini"


@dataclass(frozen=True)
class OpdefPath:
    """A prefix registered with ``registerOpdefPath``."""

    provider: Provider | None

    def answer(self, call: Call) -> Answer:
        """Answer ``call``, routed here: see :func:`_answer_opdef`."""
        return _answer_opdef(call, self)


def register_opdef_path(
    registry: _registry.Registry, prefix: str = "/opdef", *, provider: Provider | None = None
) -> None:
    """
    Register ``prefix`` into ``registry``: see :func:`houweb.registerOpdefPath`,
    which is this on the default server's registry.
    """
    if provider is not None and not callable(provider):
        raise TypeError("provider must be callable")
    registry.add_path(_registry.PREFIX, prefix, [-1], OpdefPath(provider))


def _answer_opdef(call: Call, target: OpdefPath) -> Response | Deferred[Response]:
    provider = target.provider
    request = call.request
    if provider is None:
        return errorResponse(request, NOT_IN_HOUDINI, 501)
    below = request.path()[len(call.match.path) :] if call.match.path != "/" else request.path()
    what = f"opdef provider {describe(provider)}"
    d = call.run(provider, request, below, shown_as=what)
    d.addCallback(as_response, what)
    d.addErrback(call.failed, what)
    return d
