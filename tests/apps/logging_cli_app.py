"""
An application for ``python -m houweb --app`` that configures Python's
logging when imported: houweb's log and access lines then go through it.
"""

import logging
import sys

import houweb

logging.basicConfig(
    stream=sys.stdout, level=logging.INFO, format="PYLOG %(name)s %(levelname)s %(message)s"
)


@houweb.urlHandler("/hello")
def hello(request):
    return "hello"
