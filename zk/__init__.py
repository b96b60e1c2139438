"""Zero-knowledge proofs of each round's outlier flags and scores (ezkl): circuit, prover facade, verifier."""
