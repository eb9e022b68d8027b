"""Stage 1 of the pipeline: the Gaussian expectation engine (Isserlis/Wick, Stein, Price)."""
