"""Stage 4 of the pipeline: kernels, simulators, exact reduction, limit, precision path."""
