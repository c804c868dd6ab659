"""Evaluation: metrics, scoring predictions per head, reports, what a run trained on (provenance),
and evaluating run folders and released models on a build's test side."""
