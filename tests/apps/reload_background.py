"""A background run() asked to reload: it warns, serves, and the script ends."""

import houweb

houweb.run(port=0, in_background=True, reload_source_changes=True)
print("SERVING", houweb.serverPorts(), flush=True)
