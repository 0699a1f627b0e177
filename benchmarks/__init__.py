"""Performance benchmarks, run by ``make bench``: each prints its figures and their ratio to the goal."""
