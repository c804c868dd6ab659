"""The training room's option lists, in a module that imports nothing (flags are built from them
before TensorFlow is loaded). Defined here only; `stages` and `workers` use them from here."""

# The paper's training stages (`stages.get_stage`).
STAGES = ("global", "attention", "global_head", "local_head")
# Distribution strategies (`workers.make_strategy`).
STRATEGIES = ("default", "mirrored", "multi_worker")
# "off", or Keras' mixed_<dtype> policy.
MIXED_PRECISION = ("off", "bfloat16", "float16")
