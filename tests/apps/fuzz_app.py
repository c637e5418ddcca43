"""The application the fuzz tests attack: a handler that reads everything."""

import json

import houweb


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
