"""``python -m houweb``: serve the demo application on http://127.0.0.1:8008/."""

from __future__ import annotations

from . import _demo
from ._run import run


def main() -> None:
    """Run the demo server in the foreground until Ctrl-C."""
    _demo.register()
    run(port=8008, in_background=False)


if __name__ == "__main__":
    main()
