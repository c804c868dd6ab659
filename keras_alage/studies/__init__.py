"""Studies the product never imports: the attention evidence, experiment reports, benchmark
measurements and how a release's settings are chosen."""
