"""For simulations and benchmarks only: nothing a production node runs imports this package."""
