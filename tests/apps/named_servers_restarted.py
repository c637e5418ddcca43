"""
A bridge that restarts itself makes a new server object each time (named
for its session, as an observed one does): prints ``KEPT <n>``, how many
server objects houweb still holds once every one has stopped.
"""

from houweb import _run, hwebserver

for session in range(5):
    server = hwebserver.Server(f"bridge_{session}")
    server.urlHandler("/ping")(lambda request: "pong")
    server.run(port=0, in_background=True)
    server.requestShutdown()
    server.lifecycle.last.wait_stopped(10)
print("KEPT", len(_run._process.lifecycles), flush=True)
