"""Speed and memory benchmarks of l2l_tf (issue 6), beside the library, which never imports them."""

# Names shared by the parent process (flags, plan, tables) and the child processes that measure;
# kept here, free of TensorFlow, so that the parent never imports it.
SUITES = ("main", "variants", "profile", "scaling", "scale_out", "estimators")
PROBLEMS = ("quadratic", "mnist")
# The variants suite's LSTM steps, in table order ("library" first: the reference). A "_xla"
# suffix compiles the variant's meta-step and trajectory with XLA.
VARIANTS = ("library", "library_xla", "feature_major", "feature_major_xla", "feature_major_tanh",
            "split_weights", "fused_cell", "tanh_form", "xla_cell")
