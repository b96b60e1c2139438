"""Shared round reading: what the aggregator node, the trainer and the audit read about a round the same way.

- :mod:`pocfl.rounds.inputs`: a round's public inputs from the chain and the content store (manifest, validation
  set, submissions, global model, hyper-parameters, history, submissions digest);
- :mod:`pocfl.rounds.report`: the round report (canonical JSON whose hash is posted on chain);
- :mod:`pocfl.rounds.hyperparams`: the next round's hyper-parameters, their rule and on-chain hash;
- :mod:`pocfl.rounds.evidence`: a trainer's evidence against a rejection (the trainer writes it, the audit reads it).

Core: nothing here imports ``aggregator`` or ``trainer_client``; this ``__init__`` imports nothing, so the pure
decision modules can import :mod:`pocfl.rounds.hyperparams` without pulling in the chain or the store.
"""
