"""``dispatch demo``: the whole service on one machine, offline, with stand-ins for the world.

The stand-ins live in the package (not only in the tests) so the demo, the benchmarks and the
test suite serve the same recorded provider answers.
"""
