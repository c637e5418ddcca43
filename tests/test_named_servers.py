"""
Named servers (Houdini 21's ``hwebserver.Server(name)``, from observed use):
several in one process on the one reactor, each with its own handlers, API
functions, pool and lifecycle, beside the default server the module-level
functions act on. Each test runs a script in a child process (a server's
``run()`` cannot be called on the test's reactor thread) and talks to it
with treq over loopback.
"""

from __future__ import annotations

import json
import os
import urllib.parse

import pytest
import pytest_twisted
from twisted.internet.error import ConnectionRefusedError

import houweb
from houweb import hwebserver

from .support import APPS, ServerProcess

FORM = {"Content-Type": ["application/x-www-form-urlencoded"]}


@pytest.fixture
def pair():
    """The two named servers of tests/apps/named_servers.py, running."""
    child = ServerProcess(os.path.join(APPS, "named_servers.py"))
    lines = {
        "called": child.wait_for_line("CALLED"),
        "default": child.wait_for_line("DEFAULT"),
        "twice": child.wait_for_line("REFUSED"),
        "workers": child.wait_for_line("REFUSED"),
        "reload": child.wait_for_line("REFUSED"),
    }
    a = int(child.wait_for_line("PORT a").split()[2])
    b = int(child.wait_for_line("PORT b").split()[2])
    yield child, a, b, lines
    child.kill()


async def call(client, port, name, *args):
    body = urllib.parse.urlencode({"json": json.dumps([name, list(args), {}])})
    return await client.post(port, "/api", data=body.encode(), headers=FORM)


async def seen(client, port) -> list[str]:
    return json.loads((await client.get(port, "/seen")).body)


@pytest_twisted.ensureDeferred
async def test_two_named_servers_answer_side_by_side_each_with_its_own_handlers(pair, client):
    _, a, b, _ = pair
    assert a != b
    assert (await client.get(a, "/who")).text == "a"
    assert (await client.get(b, "/who")).text == "b"
    # A handler registered on one is never served by the other...
    assert (await client.get(b, "/only-a")).status == 404
    assert (await client.get(a, "/only-b")).status == 404
    # ...nor is the default server's (module-level @houweb.urlHandler).
    assert (await client.get(a, "/default")).status == 404
    assert (await client.get(b, "/default")).status == 404
    assert await seen(client, a) == ["a:/who", "b:/who"]
    assert (await client.get(a, "/only-a")).text == "only a"
    assert await seen(client, b) == ["a:/who", "b:/who", "a:/only-a"]


@pytest_twisted.ensureDeferred
async def test_the_api_of_a_named_server_neither_lists_nor_calls_the_others_functions(pair, client):
    _, a, b, _ = pair
    assert json.loads((await call(client, a, "calc.add", 2, 3)).body) == 5
    assert json.loads((await call(client, b, "calc.mul", 2, 3)).body) == 6
    refused = await call(client, a, "calc.mul", 2, 3)
    assert refused.status == 404
    assert "unknown API function 'calc.mul'" in refused.text
    assert (await call(client, b, "calc.add", 2, 3)).status == 404
    listed_a = [
        entry["name"] for entry in json.loads((await call(client, a, "houweb.functions")).body)
    ]
    listed_b = [
        entry["name"] for entry in json.loads((await call(client, b, "houweb.functions")).body)
    ]
    assert (listed_a, listed_b) == (["calc.add"], ["calc.mul"])
    assert await seen(client, a) == ["a:calc.add", "b:calc.mul"]


def test_port_callback_gets_the_bound_main_port_in_the_thread_that_called_run(pair):
    _, a, b, lines = pair
    called = json.loads(lines["called"].split(" ", 1)[1])
    # Both before run() returned, in the main thread that called it; a
    # callback taking two arguments is called as Houdini 21 calls it (an
    # observed bridge: "called with the port name and the port, both as
    # text"), one taking one with the number.
    assert called == [["a", a, True], ["b", "main", str(b), True]]


def test_running_the_same_server_twice_is_operation_failed_naming_it(pair):
    _, a, _, lines = pair
    assert lines["twice"] == f"REFUSED houweb server 'a' is already running on port {a}"


def test_workers_are_refused_while_another_server_runs_in_the_process(pair):
    _, _, _, lines = pair
    assert lines["workers"].startswith("REFUSED workers > 1 needs a foreground run() that owns")
    assert "houweb server 'a', houweb server 'b'" in lines["workers"]


def test_reloading_in_the_foreground_is_refused_while_another_server_runs(pair):
    # It was served beside a and b with a warning that it needed
    # in_background=False, which it had; the README says it is refused.
    _, _, _, lines = pair
    assert lines["reload"].startswith(
        "REFUSED reload_source_changes needs a foreground run() that owns"
    )
    assert "houweb server 'a', houweb server 'b'" in lines["reload"]


def test_module_level_functions_act_on_the_default_server_which_does_not_run(pair):
    # serverPorts() and isInDebugMode() are the default server's: it does not
    # run while a and b do; requestShutdown() on it left them serving.
    _, _, _, lines = pair
    assert lines["default"] == "DEFAULT [[], false]"


@pytest_twisted.ensureDeferred
async def test_stopping_one_named_server_leaves_the_other_serving(pair, client):
    child, a, b, _ = pair
    assert (await client.get(a, "/stop")).text == "stopping"
    child.wait_for_line("STOPPED a")
    with pytest.raises(ConnectionRefusedError):
        await client.get(a, "/who")
    assert (await client.get(b, "/who")).text == "b"
    assert await seen(client, b) == ["b:/who"]
    assert (await client.get(b, "/quit")).text == "bye"
    assert child.wait_for_line("AGAIN") == "AGAIN 1"
    assert child.wait_for_line("END") == "END [[], []]"
    # Logging outlived a, which began it: b's end (and a's second run) is logged.
    assert child.output().count("houweb: stopped") == 3
    # Each line names its server: with several, "stopped" alone says not which.
    assert child.output().count("houweb: stopped (server 'a')") == 2
    assert child.output().count("houweb: stopped (server 'b')") == 1
    assert (
        f"houweb: listening on http://127.0.0.1:{b}/ (loopback only; server 'b')" in child.output()
    )
    assert child.process.returncode == 0


@pytest_twisted.ensureDeferred
async def test_a_named_server_in_the_background_beside_the_default_one_in_the_foreground(
    client,
):
    child = ServerProcess(os.path.join(APPS, "named_beside_default.py"))
    try:
        c = int(child.wait_for_line("PORT c").split()[2])
        main = int(child.wait_for_line("PORT default").split()[2])
        assert c != 8008  # run() without a port took the settings' PORT (0)
        assert (await client.get(c, "/who")).text == "c"
        # ALLOWED_HOSTS of the settings: 127.0.0.1 only, so not "localhost".
        assert (await client.get(c, "/who", headers={"Host": ["localhost"]})).status == 400
        assert (await client.get(main, "/who", headers={"Host": ["localhost"]})).text == "default"
        assert (await client.get(c, "/seen")).status == 404  # the default server's handler
        assert (await client.get(c, "/stop")).text == "stopping"
        child.wait_for_line("STOPPED c")
        with pytest.raises(ConnectionRefusedError):
            await client.get(c, "/who")
        assert (await client.get(main, "/seen")).text == "c:/who,default:/who"
        assert (await client.get(main, "/quit")).text == "bye"
        assert child.wait_for_line("RETURNED") == "RETURNED [] []"
        assert child.process.wait(20) == 0
    finally:
        child.kill()


def test_server_is_exported_under_houdinis_names_and_needs_a_name():
    assert hwebserver.Server is houweb.Server
    server = houweb.Server("x")
    assert server.name() == "x"
    assert server.serverPorts() == [] and not server.isInDebugMode()
    server.requestShutdown()  # not running: nothing happens
    with pytest.raises(ValueError, match="must not be empty"):
        houweb.Server("")
    with pytest.raises(TypeError, match="must be a str"):
        houweb.Server(None)  # type: ignore[arg-type]


def test_registrations_on_a_named_server_stay_out_of_the_default_one(registry):
    server = houweb.Server("x")
    server.urlHandler("/p")(lambda request: "p")
    server.apiFunction("ns")(lambda request: 1)
    assert registry.is_empty()
    assert not server.registry.is_empty()
    assert server.registry.match("/p", 0, 0) is not None
    assert registry.match("/p", 0, 0) is None


def test_set_settings_for_port_on_a_named_server_leaves_the_default_servers_ports_alone(
    registry, logged
):
    from .conftest import messages

    server = houweb.Server("x")
    server.setSettingsForPort({"PORT": 9000, "ADDRESS": "127.0.0.1", "MAX_PORT": 9010}, "main")
    server.setSettingsForPort({"PORT": 9001}, "api")
    main = server.registry.ports.main()
    assert (main.port, main.address, main.max_port) == (9000, "127.0.0.1", 9010)
    assert server.registry.ports.get("api").port == 9001
    assert registry.ports.main().port is None
    assert registry.ports.named() == {}
    server.setSettingsForPort({"NOPE": 1})
    assert "NOPE" in messages(logged)
    with pytest.raises(TypeError, match="PORT"):
        server.setSettingsForPort({"PORT": "80"})
    with pytest.raises(TypeError, match="dict"):
        server.setSettingsForPort([("PORT", 1)])  # type: ignore[arg-type]


def test_set_port_info_is_set_settings_for_port_with_arguments(logged):
    server = houweb.Server("x")
    server.setPortInfo("main", 18812, 18813, True, "127.0.0.1", False, ["localhost"], True)
    main = server.registry.ports.main()
    assert (main.port, main.max_port, main.allow_system_port) == (18812, 18813, True)
    assert (main.address, main.ipv6) == ("127.0.0.1", False)
    assert (main.allowed_hosts, main.use_x_forwarded_host) == (("localhost",), True)


def test_a_bridge_written_for_houdini_21_runs_unchanged_through_houweb_run():
    from .children import Child, app, get

    with Child.houweb("run", app(os.path.join("houdini", "named_server_bridge.py"))) as child:
        port = child.port()
        assert get(port, "/bridge/ping") == (200, "pong from bridge")
        assert get(port, "/bridge/stop") == (200, "stopping")
        assert child.wait() == 0
        assert "REPORTED True" in child.output
        assert "BRIDGE STOPPED" in child.output


@pytest_twisted.ensureDeferred
async def test_a_foreground_run_returning_shuts_the_servers_beside_it_down_gracefully(client):
    child = ServerProcess(os.path.join(APPS, "named_beside_default.py"))
    try:
        c = int(child.wait_for_line("PORT c").split()[2])
        main = int(child.wait_for_line("PORT default").split()[2])
        assert (await client.get(c, "/who")).text == "c"
        assert (await client.get(main, "/quit")).text == "bye"  # c still runs
        assert child.wait_for_line("RETURNED") == "RETURNED [] []"
        # c went through its shutdown before the reactor stopped, not cut off.
        assert child.output().count("houweb: stopped") == 2
        assert child.process.returncode == 0
    finally:
        child.kill()


def test_a_server_object_takes_the_port_another_was_just_asked_to_release():
    # requestShutdown() returns before the reactor thread closes the ports:
    # the new server's bind came first, "address already in use".
    child = ServerProcess(os.path.join(APPS, "named_port_handover.py"))
    try:
        assert child.wait_for_line("HANDOVER") == "HANDOVER bridge_2"
        # The old server's request in flight still finished, within its grace.
        assert child.wait_for_line("OLD") == "OLD [b'slow bridge_1']"
        child.wait_for_line("END")
    finally:
        child.kill()


@pytest.mark.parametrize(
    "name, label",
    [("", "the previous houweb server"), ("a", "the previous run of houweb server 'a'")],
)
def test_a_server_still_stopping_after_its_grace_is_named_with_how_long_was_waited(
    monkeypatch, name, label
):
    # The default server's message had lost "…s after it was asked to (its
    # shutdown grace, plus a margin)" (a conditional expression swallowed it).
    import threading
    import types

    from houweb import _run

    class Stuck:
        stop_asked = True
        config = types.SimpleNamespace(shutdown_grace=0.0)

        def wait_stopped(self, timeout):
            return False

    monkeypatch.setattr(_run, "STOPPING_MARGIN", 0.0)
    lifecycle = _run.Lifecycle(name)
    lifecycle.last = Stuck()
    raised = []

    def claim():  # not on the test's reactor thread, as run() is never
        try:
            _run._claim_reactor(lifecycle)
        except houweb.OperationFailed as exc:
            raised.append(str(exc))

    thread = threading.Thread(target=claim)
    thread.start()
    thread.join(10)
    assert raised == [
        f"{label} is still stopping 0s after it was asked to (its shutdown grace, plus a margin)"
    ]


def test_two_servers_starting_the_background_reactor_at_once_run_it_once():
    # Two threads' first run(in_background=True) (a and b started side by
    # side) both started a reactor thread: the second reactor.run() raised,
    # its dead thread could replace the live one, and from then on houweb
    # took its own reactor for "run by other code" (later runs refused) and
    # did not shut the servers down at exit.
    import threading

    from twisted.internet.error import ReactorAlreadyRunning

    from houweb._reactor import BackgroundReactor

    both_checked = threading.Barrier(2)
    stop = threading.Event()

    class Reactor:
        running = False
        runs = 0

        def callWhenRunning(self, function):
            try:  # both past "is it alive?" before either thread runs it
                both_checked.wait(timeout=1)
            except threading.BrokenBarrierError:
                pass  # the other one waits for this start to finish
            self.waiting = [*getattr(self, "waiting", []), function]

        def run(self, installSignalHandlers):
            self.runs += 1
            if self.running:
                raise ReactorAlreadyRunning()
            self.running = True
            for function in self.waiting:
                function()
            stop.wait(10)

    reactor = Reactor()
    background = BackgroundReactor(reactor)
    starts = [threading.Thread(target=background.start) for _ in range(2)]
    try:
        for thread in starts:
            thread.start()
        for thread in starts:
            thread.join(10)
        assert reactor.runs == 1
        assert background.is_alive()
    finally:
        stop.set()


def test_server_objects_that_stopped_are_not_held_for_ever():
    # Each one that ever ran stayed in the process's list, with its last
    # server (site, pool, registry): a bridge restarting N times kept N.
    child = ServerProcess(os.path.join(APPS, "named_servers_restarted.py"))
    try:
        assert child.wait_for_line("KEPT") == "KEPT 1"
    finally:
        child.kill()
