"""``python -m pocfl.cli``."""

from pocfl.cli.main import main

main()
