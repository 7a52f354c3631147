"""``python -m polyvae``: the ``polyvae`` command."""

from polyvae.cli import main

main()
