"""
What a registered target is to the site: something that answers for itself.

The registry holds targets (a URL handler, a static directory, an ASGI app,
...); the site's router finds the one a request is for and calls its
:meth:`Target.answer`, the way twisted.web calls a resource's ``render``.
Each kind of target carries its own way to answer, so a target registered is
answerable whether or not some other module was imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

from twisted.internet.defer import Deferred

if TYPE_CHECKING:  # only for the hints: _site imports the registry, which holds targets
    from ._response import Response
    from ._server import RunningServer
    from ._site import Call

#: What a target answers: the Response now, or a Deferred that fires with it.
Answer = Union["Response", "Deferred[Response]"]


class Target(Protocol):
    """A kind of registration the router can send a request to."""

    def answer(self, call: Call) -> Answer:
        """
        Answer the request ``call`` carries (on the reactor thread).

        :param call: the request, its match (whose ``target`` is ``self``)
            and the running server's context.
        """


class Extension(Protocol):
    """
    What a kind of target adds to the life of each server that serves it
    (the ASGI apps' lifespans): made when the server is, started once it
    listens, stopped (for at most ``shutdown_grace`` seconds) after its
    requests are done.
    """

    def start(self) -> None:
        """The server listens."""

    def stop(self) -> Deferred[Any]:
        """The server's requests are done (or abandoned); fires once this part stopped."""


#: Makes a server's :class:`Extension`, called with the running server
#: (``houweb._server.RunningServer``). A registry holds those its targets
#: need (:meth:`houweb._registry.Registry.add_lifecycle`).
ExtensionFactory = Callable[["RunningServer"], Extension]
