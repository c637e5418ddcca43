"""
Handlers the reload tests copy to a temporary directory, serve, and edit
(the VERSION line) while the server runs.
"""

import os

import houweb

VERSION = "one"


@houweb.urlHandler("/version", ports=[-1])
def version(request):
    return houweb.Response(f"{VERSION} {os.getpid()}", content_type="text/plain")
