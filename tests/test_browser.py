"""
The attacks of issue 13 played by a real browser: headless Chromium loads an
attacker page from another loopback origin (a cross-site form post, a
``no-cors`` fetch, a WebSocket) and a DNS-rebinding page under a made-up name
mapped to 127.0.0.1 on houweb's own port. None of them may reach a handler,
while the page houweb serves itself keeps working (its fetches and WebSocket).

Outcomes are observed on the servers' side: the handlers' side effects, and
the reports the pages post back (each fires a Deferred the test waits for,
with a bounded timeout).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.interfaces import IReadDescriptor
from twisted.web import resource, server
from zope.interface import implementer

import houweb

from .browser import HEADLESS_FLAGS
from .support import debian_program

REBIND_NAME = "rebind.test"
WAIT = 90  # seconds: a bounded wait for each page's report


def chromium() -> str:
    return debian_program("chromium", "chromium")


def chromium_arguments(profile: str) -> list[str]:
    return [
        *HEADLESS_FLAGS,
        "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
        f"--host-resolver-rules=MAP {REBIND_NAME} 127.0.0.1",
        f"--user-data-dir={profile}",
    ]


@implementer(IReadDescriptor)
class _ExitWatch:
    """
    Reaps one child process once it has exited: its pidfd becomes readable
    then (Linux), an event in the reactor's own poll, without signals.

    Twisted reaps a child on SIGCHLD, through a wakeup fd that uvloop's
    ``run_forever`` replaces with its own, and once when the child's last
    pipe closes. A Chromium whose pipes closed just before it had quite
    exited (a window that load widens) stayed a zombie and ``processEnded``
    never came: the DNS-rebinding step's 90 s timeout, with the page
    already printed (the flake this ends).

    :param process: the Twisted process transport to reap.
    """

    def __init__(self, process: Any) -> None:
        self._process = process
        self._fd = os.pidfd_open(process.pid)
        reactor.addReader(self)

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        """The child has exited: stop watching, and reap it (``processEnded`` follows)."""
        reactor.removeReader(self)
        os.close(self._fd)
        self._fd = -1
        if self._process.pid is not None:
            self._process.reapProcess()

    def connectionLost(self, reason: Any) -> None:
        if self._fd != -1:
            os.close(self._fd)
            self._fd = -1

    def logPrefix(self) -> str:
        return "ExitWatch"


class Browser(protocol.ProcessProtocol):
    """
    A headless Chromium showing one page until :meth:`stop` (by its PID);
    ``ended`` fires with its output once it has exited.
    """

    def __init__(self, url: str, *extra: str) -> None:
        self.output = b""
        self.ended: defer.Deferred[bytes] = defer.Deferred()
        #: (marker, Deferred) waiting for the output to contain the marker.
        self._awaited: list[tuple[bytes, defer.Deferred[bytes]]] = []
        self.profile = tempfile.mkdtemp(prefix="houweb-chromium-")
        program = chromium()
        arguments = [program, *chromium_arguments(self.profile), *extra, url]
        self.process = reactor.spawnProcess(self, program, arguments, env=dict(os.environ))
        if hasattr(os, "pidfd_open"):  # Linux (CI's Debian); elsewhere Twisted's reaping only
            _ExitWatch(self.process)

    def outReceived(self, data: bytes) -> None:
        self.output += data
        waiting, self._awaited = self._awaited, []
        for marker, printed in waiting:
            if marker in self.output:
                printed.callback(self.output)
            else:
                self._awaited.append((marker, printed))

    errReceived = outReceived

    def printed(self, marker: bytes) -> defer.Deferred[bytes]:
        """:returns: a Deferred that fires with the output once it contains ``marker``."""
        if marker in self.output:
            return defer.succeed(self.output)
        printed: defer.Deferred[bytes] = defer.Deferred()
        self._awaited.append((marker, printed))
        return printed

    def processEnded(self, reason: Any) -> None:
        shutil.rmtree(self.profile, ignore_errors=True)
        self.ended.callback(self.output)

    def stop(self) -> defer.Deferred[bytes]:
        """Kill it (if still running) and wait until it has exited."""
        if self.process.pid is not None:  # still running
            self.process.signalProcess("KILL")
            return self.ended.addTimeout(30, reactor)
        return defer.succeed(self.output)


async def first_of(event: defer.Deferred[Any], browser: Browser) -> Any:
    """
    :returns: what ``event`` fires with, within ``WAIT`` seconds.
    :raises AssertionError: if Chromium exits first (with its output).
    """
    either = defer.DeferredList([event, browser.ended], fireOnOneCallback=True, consumeErrors=True)
    value, which = await either.addTimeout(WAIT, reactor)
    if which == 1:
        raise AssertionError(f"Chromium exited before the page reported:\n{value!r}")
    return value


GOOD_PAGE = """<!DOCTYPE html><html><body><pre id="out">running</pre><script>
async function main() {
  const results = {};
  const act = await fetch("/act", {method: "POST", body: "x=good",
    headers: {"Content-Type": "application/x-www-form-urlencoded"}});
  results.act = act.status;
  const api = await fetch("/api", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(["victim.run", ["good page"], {}])});
  results.api = await api.json();
  results.ws = await new Promise(resolve => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.onmessage = event => { resolve(event.data); ws.close(); };
    ws.onerror = () => resolve("error");
  });
  await fetch("/report", {method: "POST", body: JSON.stringify(results)});
  document.getElementById("out").textContent = JSON.stringify(results);
}
main();
</script></body></html>"""

#: What a rebinding attacker's page does once its name points at 127.0.0.1.
REBIND_PAGE = """<!DOCTYPE html><html><body><script>
fetch("/secret").then(r => r.text()).then(secret =>
  fetch("/report", {method: "POST", body: JSON.stringify({stolen: secret})}));
</script></body></html>"""

ATTACKER_PAGE = """<!DOCTYPE html><html><body>
<iframe name="sink"></iframe>
<form id="form" method="POST" action="http://127.0.0.1:{port}/act" target="sink">
  <input name="x" value="evil form">
</form>
<script>
async function main() {{
  const out = {{}};
  const call = new URLSearchParams({{json: JSON.stringify(["victim.run", ["evil fetch"], {{}}])}});
  try {{
    await fetch("http://127.0.0.1:{port}/api", {{mode: "no-cors", method: "POST", body: call}});
    out.fetch = "sent";
  }} catch (e) {{ out.fetch = "failed"; }}
  out.ws = await new Promise(resolve => {{
    const ws = new WebSocket("ws://127.0.0.1:{port}/ws");
    ws.onopen = () => resolve("open");
    ws.onerror = () => resolve("error");
  }});
  out.form = await new Promise(resolve => {{
    document.getElementsByName("sink")[0].onload = () => resolve("loaded");
    document.getElementById("form").submit();
  }});
  await fetch("/done", {{method: "POST", body: JSON.stringify(out)}});
}}
main();
</script></body></html>"""


class AttackerSite(resource.Resource):
    """The attacker's own server (another origin): its page, and where it reports."""

    isLeaf = True

    def __init__(self, houweb_port: int) -> None:
        super().__init__()
        self.page = ATTACKER_PAGE.format(port=houweb_port).encode()
        self.done: defer.Deferred[dict[str, Any]] = defer.Deferred()

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/html")
        return self.page

    def render_POST(self, request: Any) -> bytes:
        if not self.done.called:
            self.done.callback(json.loads(request.content.read()))
        return b"ok"


def register_victim(seen: list[tuple[str, str]], reports: defer.DeferredQueue[Any]) -> None:
    """houweb's side: the page, the handlers an attacker wants to reach, the report sink."""
    houweb.urlHandler("/")(lambda request: GOOD_PAGE)
    houweb.urlHandler("/rebind")(lambda request: seen.append(("rebind page", "")) or REBIND_PAGE)
    houweb.urlHandler("/secret")(lambda request: seen.append(("secret", "")) or "the secret")

    @houweb.urlHandler("/act")
    def act(request: houweb.Request) -> str:
        seen.append(("act", request.POST().get("x", "")))
        return "acted"

    @houweb.apiFunction("victim")
    def run(request: houweb.Request, who: str) -> str:
        seen.append(("api", who))
        return f"ran for {who}"

    @houweb.webSocket("/ws")
    class Socket(houweb.WebSocket):
        async def connect(self, request: houweb.Request) -> None:
            seen.append(("ws", request.header("Origin")))
            await self.accept()
            self.send("hello from houweb")

    @houweb.urlHandler("/report")
    async def report(request: houweb.Request) -> str:  # on the reactor
        reports.put(json.loads(request.body()))
        return "thanks"


@pytest.mark.skipif(os.name != "posix", reason="headless Chromium from Debian")
@pytest_twisted.ensureDeferred
async def test_chromium_pages_from_other_origins_and_rebound_names_reach_no_handler(serve):
    chromium()  # skips (outside CI) before anything starts, if it cannot be had
    seen: list[tuple[str, str]] = []
    reports: defer.DeferredQueue[Any] = defer.DeferredQueue()
    register_victim(seen, reports)
    port = (await serve()).port_numbers()[0]
    attacker = AttackerSite(port)
    attacker_port = reactor.listenTCP(0, server.Site(attacker), interface="127.0.0.1")
    try:
        # The page houweb serves itself works: fetch, /api and WebSocket.
        good = Browser(f"http://127.0.0.1:{port}/")
        try:
            report = await first_of(reports.get(), good)
        finally:
            await good.stop()
        assert report == {"act": 200, "api": "ran for good page", "ws": "hello from houweb"}
        assert ("act", "good") in seen and ("api", "good page") in seen
        assert ("ws", f"http://127.0.0.1:{port}") in seen
        seen.clear()

        # The attacker's page, from another origin: every attempt settles,
        # then it reports to its own server.
        evil = Browser(f"http://127.0.0.1:{attacker_port.getHost().port}/")
        try:
            outcome = await first_of(attacker.done, evil)
        finally:
            await evil.stop()
        assert seen == []  # no handler, API function or WebSocket was reached
        assert outcome["ws"] == "error" and outcome["form"] == "loaded", outcome
        # DNS rebinding: a page under a made-up name on houweb's own port.
        # Chromium prints the page it got (the end of its DOM is the event
        # waited for), then is stopped: its own exit is no part of the claim.
        rebinding = Browser(f"http://{REBIND_NAME}:{port}/rebind", "--dump-dom")
        try:
            rebound = await first_of(rebinding.printed(b"</html>"), rebinding)
        finally:
            await rebinding.stop()
        assert b"ALLOWED_HOSTS" in rebound, rebound[-1000:]
        assert seen == []  # no handler, API function or WebSocket was reached
        assert reports.pending == []  # the rebinding page never reported a secret
    finally:
        await attacker_port.stopListening()


#: More shapes a page can send without a preflight (the security review).
MORE_ATTACKS_PAGE = """<!DOCTYPE html><html><body>
<iframe name="sink"></iframe>
<form id="plain" method="POST" enctype="text/plain" target="sink"
      action="http://127.0.0.1:{port}/api">
  <input name='["victim.run", ["evil text/plain"], {{}}]' value="">
</form>
<form id="multi" method="POST" enctype="multipart/form-data" target="sink"
      action="http://localhost:{port}/act">
  <input name="x" value="evil multipart">
</form>
<iframe id="sandboxed" sandbox="allow-forms allow-scripts" srcdoc='
<form id="f" method="POST" action="http://127.0.0.1:{port}/act"><input name="x" value="evil sandboxed"></form>
<script>document.getElementById("f").submit();</script>'></iframe>
<script>
function loaded(form) {{
  return new Promise(resolve => {{
    document.getElementsByName("sink")[0].onload = () => resolve("loaded");
    document.getElementById(form).submit();
  }});
}}
function socket(url) {{
  return new Promise(resolve => {{
    const ws = new WebSocket(url);
    ws.onopen = () => resolve("open");
    ws.onerror = () => resolve("error");
  }});
}}
async function main() {{
  const out = {{}};
  const call = JSON.stringify(["victim.run", ["evil beacon"], {{}}]);
  out.beacon = navigator.sendBeacon("http://127.0.0.1:{port}/api",
    new Blob([call], {{type: "text/plain"}}));
  out.beacon_form = navigator.sendBeacon("http://localhost:{port}/act",
    new URLSearchParams({{x: "evil beacon form"}}));
  for (const [name, options] of [
      ["put", {{mode: "no-cors", method: "PUT", body: "x=evil put"}}],
      ["keepalive", {{mode: "no-cors", method: "POST", keepalive: true,
                      body: new URLSearchParams({{x: "evil keepalive"}})}}],
      ["no_referrer", {{mode: "no-cors", method: "POST", referrerPolicy: "no-referrer",
                        body: new URLSearchParams({{x: "evil no-referrer"}})}}]]) {{
    try {{ await fetch("http://localhost:{port}/act", options); out[name] = "sent"; }}
    catch (e) {{ out[name] = "failed"; }}
  }}
  out.ws_localhost = await socket("ws://localhost:{port}/ws");
  out.ws_rebind = await socket("ws://{rebind}:{port}/ws");
  out.plain = await loaded("plain");
  out.multi = await loaded("multi");
  await new Promise(resolve => setTimeout(resolve, 500));  // the sandboxed frame's post
  await fetch("/done", {{method: "POST", body: JSON.stringify(out)}});
}}
main();
</script></body></html>"""


@pytest.mark.skipif(os.name != "posix", reason="headless Chromium from Debian")
@pytest_twisted.ensureDeferred
async def test_chromium_beacons_text_plain_forms_sandboxed_frames_and_sockets_reach_no_handler(
    serve,
):
    chromium()
    seen: list[tuple[str, str]] = []
    reports: defer.DeferredQueue[Any] = defer.DeferredQueue()
    register_victim(seen, reports)
    port = (await serve()).port_numbers()[0]
    attacker = AttackerSite(port)
    attacker.page = MORE_ATTACKS_PAGE.format(port=port, rebind=REBIND_NAME).encode()
    attacker_port = reactor.listenTCP(0, server.Site(attacker), interface="127.0.0.1")
    try:
        evil = Browser(f"http://127.0.0.1:{attacker_port.getHost().port}/")
        try:
            outcome = await first_of(attacker.done, evil)
        finally:
            await evil.stop()
        assert seen == [], outcome  # no handler, API function or WebSocket was reached
        assert outcome["beacon"] is True and outcome["beacon_form"] is True, outcome
        assert outcome["ws_localhost"] == "error" and outcome["ws_rebind"] == "error", outcome
        assert outcome["plain"] == "loaded" and outcome["multi"] == "loaded", outcome
    finally:
        await attacker_port.stopListening()


#: A child that closes its pipes, then exits only once told to (a byte on fd 3).
QUIET_THEN_EXIT = "import os\nfor fd in (0, 1, 2): os.close(fd)\nos.read(3, 1)\n"


class _Child(protocol.ProcessProtocol):
    """Fires ``pipes_closed`` once the child closed its stdin/out/err, ``ended`` once it ended."""

    def __init__(self) -> None:
        self.pipes_closed: defer.Deferred[None] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._open = {0, 1, 2}

    def childConnectionLost(self, childFD: int) -> None:
        self._open.discard(childFD)
        if not self._open:
            self.pipes_closed.callback(None)

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfd_open is Linux's")
@pytest_twisted.ensureDeferred
async def test_a_child_that_exits_after_closing_its_pipes_is_reaped():
    """
    The browser tests' harness notices a child that exits after its pipes
    closed (Chromium under load did): ``processEnded`` comes, so a wait for a
    browser's exit ends (see :class:`_ExitWatch`).
    """
    told, tell = os.pipe()
    try:
        child = _Child()
        process = reactor.spawnProcess(
            child,
            sys.executable,
            [sys.executable, "-c", QUIET_THEN_EXIT],
            env=dict(os.environ),
            childFDs={0: "w", 1: "r", 2: "r", 3: told},
        )
        _ExitWatch(process)
        await child.pipes_closed.addTimeout(WAIT, reactor)
        os.write(tell, b"x")  # the child exits now, its pipes long closed
        await child.ended.addTimeout(WAIT, reactor)
    finally:
        os.close(told)
        os.close(tell)
