"""
houweb with ``/hello`` and an API function ``big`` whose result is about
10 MB of JSON: the big-API-result scenario (``bench.bigapi``).
"""

from __future__ import annotations

from typing import Any

import houweb

from .common import HELLO, parse_args

options = parse_args(__doc__ or "")

#: Rows of about 60 bytes of JSON each: 10 MB in all, built once.
BIG_ROWS = 132_000
BIG: list[dict[str, Any]] = [
    {"id": i, "name": f"item {i}", "value": i * 0.25, "tags": ["a", "b"]} for i in range(BIG_ROWS)
]


@houweb.urlHandler("/hello")
def hello(request: houweb.Request) -> houweb.Response:
    return houweb.Response(HELLO, content_type="text/plain")


@houweb.apiFunction()
def big(request: houweb.Request) -> list[dict[str, Any]]:
    return BIG


houweb.run(port=options.port, max_num_threads=4, in_background=False)
