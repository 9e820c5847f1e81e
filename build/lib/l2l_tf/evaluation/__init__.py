"""Test curves with confidence intervals, baseline tuning on validation problems, results files."""

from l2l_tf.evaluation.curves import evaluate_losses, summarize_losses
from l2l_tf.evaluation.results import plot_results, read_results, write_results
from l2l_tf.evaluation.tuning import DEFAULT_LEARNING_RATE_GRID, tune_learning_rate
