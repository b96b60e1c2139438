"""Aggregator: robust aggregation, outlier decisions, contribution scores, and the node that runs them.

The decision science is pure (no I/O): ``trust``, ``flag``, ``shapley``, ``utility``, ``seeds``, ``baselines`` and
``round`` (:func:`aggregator.round.decide_round`). The CountSketch the Flag Aggregator decides on is
:mod:`pocfl.sketch` (the trainer's feature commitment sketches with it too). The I/O shell is ``node``
(:class:`aggregator.node.AggregatorNode`, ``pocfl aggregate``), ``flower_server`` (the Flower ServerApp) and
``round_inputs`` (the decision's settings from the manifest, its seeds from the chain). What the node reads about a
round, it reads through :mod:`pocfl.rounds`, as the trainer and the audit do.
"""
