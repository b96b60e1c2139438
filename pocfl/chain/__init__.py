"""Chain layer: connections, accounts, the typed marketplace client and revert decoding."""
