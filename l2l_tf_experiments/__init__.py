"""Experiments beside the library: systems and questions that use `l2l_tf` but are not part of it."""
