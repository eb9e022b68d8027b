"""Stage 5 of the pipeline: applications (run, figures, check, derive, CLI)."""
