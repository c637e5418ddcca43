"""
The application the fuzz tests attack: a handler that reads everything, and
one file served as a static file and by a handler (for Range requests).
"""

import json
import os
import tempfile

import houweb

FILES = tempfile.mkdtemp(prefix="houweb-fuzz-")
with open(os.path.join(FILES, "data.bin"), "wb") as out:
    out.write(bytes(range(256)) * 256)
houweb.registerStaticFilesDirectory(FILES, "/static")


@houweb.urlHandler("/file")
def file(request):
    return houweb.fileResponse(os.path.join(FILES, "data.bin"))


@houweb.urlHandler("/echo", is_prefix=True)
def echo(request):
    seen = {
        "method": request.method(),
        "path": request.path(),
        "GET": request.GETLists(),
        "POST": request.POSTLists(),
        "headers": request.headers(),
        "cookies": request.cookies(),
        "files": sorted(request.files()),
        "body": len(request.body()),
    }
    return houweb.Response(json.dumps(seen), content_type="application/json")


apiFunction = getattr(houweb, "apiFunction", None)
if apiFunction is not None:

    @apiFunction()
    def f(request, *args, **kwargs):
        return {"args": list(args), "kwargs": sorted(kwargs)}


houweb.run(port=0, in_background=True)
print("PORT", houweb.serverPorts()[0], flush=True)
import threading  # noqa: E402

threading.Event().wait()
