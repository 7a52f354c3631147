"""``python -m polyvae.cli`` (used by ``torchrun -m polyvae.cli``)."""

from polyvae.cli import main

main()
