"""
The setup step: wrk from Debian's packages, the peer servers from PyPI
(``bench/requirements.txt``), the 1 MiB file the servers serve, and the
bytecode of houweb and the bench servers.
"""

from __future__ import annotations

import compileall
import importlib.util
import os
import shutil
import subprocess
import sys

from .servers import SERVERS
from .servers.common import STATIC_NAME, STATIC_SIZE

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REQUIREMENTS = os.path.join(HERE, "requirements.txt")


def ensure_wrk() -> str:
    """
    :returns: the path of ``wrk``, installed with apt-get if missing.
    :raises SystemExit: when it cannot be installed.
    """
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise SystemExit("wrk is missing and there is no apt-get: install wrk and run again")
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    print("bench: installing wrk with apt-get", flush=True)
    if subprocess.call([*prefix, apt, "install", "-y", "wrk"]) != 0:
        subprocess.check_call([*prefix, apt, "update"])
        subprocess.check_call([*prefix, apt, "install", "-y", "wrk"])
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("apt-get did not install wrk")
    return found


def ensure_peers() -> None:
    """Install the peer servers listed in requirements.txt when one is missing."""
    wanted = {module for spec in SERVERS for module in spec.needs} | {"websockets"}
    if all(importlib.util.find_spec(name) for name in wanted):
        return
    print("bench: installing the peer servers with pip", flush=True)
    result = subprocess.call([sys.executable, "-m", "pip", "install", "-q", "-r", REQUIREMENTS])
    if result != 0:
        print("bench: some peers could not be installed; they will be skipped", flush=True)


def make_files(directory: str) -> str:
    """:returns: ``directory``, holding the 1 MiB file the servers serve."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, STATIC_NAME)
    if not os.path.exists(path) or os.path.getsize(path) != STATIC_SIZE:
        with open(path, "wb") as out:
            out.write(os.urandom(STATIC_SIZE))
    return directory


def compile_sources() -> None:
    """
    Write the bytecode of houweb and of the bench servers, as installing a
    package does (pip compiles what it installs; the peers are compiled
    already). Otherwise a server started with ``PYTHONDONTWRITEBYTECODE`` set
    compiles houweb's sources on every start, and the cold start counts that
    too (about 25 ms, measured).
    """
    for package in ("houweb", "bench"):
        compileall.compile_dir(os.path.join(ROOT, package), quiet=1)
