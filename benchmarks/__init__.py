"""`make bench`: mediacdr's benchmarks on a local broker (and PostgreSQL), written to
docs/BENCHMARKS.md. Benchmarks are not tests: the suite only runs them end to end at a tiny size."""
