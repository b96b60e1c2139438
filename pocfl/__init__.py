"""pocfl: a proof-of-contribution marketplace for federated learning.

The shared core: contract artifacts, the chain layer, payout math and the ``pocfl`` command line.
"""

__version__ = "0.1.0"
