"""Test curves with confidence intervals, baseline tuning on validation problems, results files,
their tables and plots, and the registry of every figure (`l2l_tf.evaluation.figures`)."""

from l2l_tf.evaluation.curves import evaluate_losses, summarize_losses
from l2l_tf.evaluation.plots import plot_results
from l2l_tf.evaluation.results import read_results, write_results
from l2l_tf.evaluation.tuning import DEFAULT_LEARNING_RATE_GRID, tune_learning_rate
