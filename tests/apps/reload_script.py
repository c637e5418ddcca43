"""
A program calling run() with reload_source_changes=True; copied next to
reload_app.py, whose handlers it imports. /argv shows its command line.
"""

import json
import sys

import reload_app  # noqa: F401 - registers the handlers the tests edit

import houweb


@houweb.urlHandler("/argv")
def argv(request):
    return houweb.Response(json.dumps(sys.argv[1:]), content_type="application/json")


houweb.run(port=0, in_background=False, reload_source_changes=True)
