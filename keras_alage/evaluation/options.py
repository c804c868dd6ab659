"""The evaluation room's option lists, in a module that imports nothing (flags are built from
them before TensorFlow is loaded). Defined here only; `scoring` uses them from here."""

# The heads a model answers with -> the model output holding each one's probabilities.
HEADS = {"global": "global_probs", "local": "local_probs", "combined": "probs"}
