"""What each benchmark measures, one module per `benchmarks/` main (which parses its flags and calls
it); the helpers they share are `studies.benchmarking`."""
