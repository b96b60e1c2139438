"""Chain layer: connections and their node control, typed transport errors, accounts, client, revert decoding."""
