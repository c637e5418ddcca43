"""
The application the soak test loads: a plain and an async handler, an
upload handler, an API function and the static directory given as argv[1];
``/fill-pool`` answers once the whole thread pool runs it at once.
"""

import asyncio
import hashlib
import sys
import threading

import houweb

POOL_SIZE = 4
_pool_full = threading.Barrier(POOL_SIZE)


@houweb.urlHandler("/fill-pool")
def fill_pool(request):
    # Returns once POOL_SIZE of these run at once: every pool thread is started.
    _pool_full.wait(20)
    return "full"


@houweb.urlHandler("/hello")
def hello(request):
    return "hello " + request.GET().get("n", "")


@houweb.urlHandler("/async")
async def later(request):
    await asyncio.sleep(0)
    return "async " + request.GET().get("n", "")


@houweb.urlHandler("/upload")
def upload(request):
    upload = request.files()["file"]
    digest = hashlib.sha256(b"".join(upload.chunks())).hexdigest()
    return f"{upload.size()} {digest} {upload.isInMemory()}"


@houweb.apiFunction("soak")
def add(request, a, b):
    return a + b


houweb.registerStaticFilesDirectory(sys.argv[1], "/static")
# Uploads over 4 KiB are spooled to temp files; smaller ones stay in memory.
houweb.run(
    port=0, in_background=True, max_num_threads=POOL_SIZE, max_in_memory_file_upload_size=4096
)
print("PORT", houweb.serverPorts()[0], flush=True)
threading.Event().wait()
