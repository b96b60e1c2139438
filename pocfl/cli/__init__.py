"""The ``pocfl`` command line; see :mod:`pocfl.cli.main`."""
