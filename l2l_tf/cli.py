"""Flags shared by the entry points, and their translation into library objects.

Flags live only here, in the entry points and in the experiments' figure plugins (e.g.
`l2l_tf_experiments.review.figures`); the library takes plain arguments (`l2l_tf.commands` reads
the flags for it). Each paper figure's settings are a flagfile in `flags/` (e.g.
`flags/quadratic.flags`).
"""

import functools
import re
import shlex
import sys
from pathlib import Path

from absl import flags
from absl import logging

from l2l_tf import errors

FLAGS = flags.FLAGS
REPO_ROOT = Path(__file__).resolve().parent.parent

# Problem.
flags.DEFINE_enum("problem", "quadratic", ["quadratic", "square", "mnist", "fashion_mnist",
                                           "conv_fashion_mnist", "cifar10", "neural_art"],
                  "Optimizee family (conv_fashion_mnist, cifar10: the conv net of paper Fig. 7; "
                  "neural_art: style transfer, paper Figs. 8-9).")
flags.DEFINE_enum("quadratic_family", "paper", ["paper", "deepmind"],
                  "paper: W, y ~ N(0, 1), one function; deepmind: U[0, 1), 128 averaged.")
flags.DEFINE_integer("num_dims", 10, "Dimension of the quadratic.")
flags.DEFINE_float("init_stddev", 0.01, "Stddev of the Gaussian initial parameters theta_0.")
flags.DEFINE_list("optimizee_hidden_sizes", ["20"], "Hidden layers of the MLP optimizee.")
flags.DEFINE_enum("activation", "sigmoid", ["sigmoid", "relu"], "MLP optimizee activation.")
flags.DEFINE_integer("batch_size", 128, "Minibatch size of the MLP and conv optimizees.")
# A distribution over MLP optimizees for meta-training (issue 14): every combination of these
# (a list left empty takes the single value of --optimizee_hidden_sizes, --activation, ...).
flags.DEFINE_list("family_hidden_widths", [], "Problem family: hidden-layer widths.")
flags.DEFINE_list("family_num_layers", [], "Problem family: numbers of hidden layers.")
flags.DEFINE_list("family_activations", [], "Problem family: activations (sigmoid, relu).")
flags.DEFINE_list("family_batch_sizes", [], "Problem family: minibatch sizes.")
flags.DEFINE_list("family_init_stddevs", [], "Problem family: stddevs of theta_0.")
flags.DEFINE_float("objective_log10_scale_range", 0.0, "Meta-training multiplies each "
                   "optimizee's f by 10^u, u ~ U[-r, r] (Lv et al. 2017); 0: off.")
flags.DEFINE_string("data_dir", None, "Data cache (default: $L2L_TF_DATA_DIR or data/cache).")
# The conv-net optimizee (paper Fig. 7; l2l_tf.problems.conv).
CONV_PROBLEMS = ("conv_fashion_mnist", "cifar10")
flags.DEFINE_list("conv_channels", ["16", "16", "16"], "Conv optimizee: channels of each conv "
                  "layer (5x5 kernels, batch norm, ReLU, 2x2 max-pool each).")
flags.DEFINE_integer("kernel_size", 5, "Conv optimizee: kernel size of every conv layer.")
flags.DEFINE_list("fc_sizes", ["32"], "Conv optimizee: hidden fully connected layers.")
flags.DEFINE_integer("image_size", 16, "Conv optimizee: images are resized (area averaging) to "
                     "this height and width. neural_art: the size S of the S x S images (64; the "
                     "new-style test: 128).")
flags.DEFINE_list("labels", [], "Conv optimizee: the labels kept (a len(labels)-way task, e.g. 0,1 "
                  "for CIFAR-2); empty: all 10. See l2l_tf.data.label_subsets.")
flags.DEFINE_bool("batch_norm", True, "Conv optimizee: batch norm (training-mode statistics, "
                  "offset only) after every conv and hidden layer.")
flags.DEFINE_bool("conv_lstm_shared", False, "Conv optimizee: one LSTM for all parameters (the "
                  "single-LSTM ablation) instead of one for the conv and one for the fully "
                  "connected layers (paper Sec. 3.4).")
# The style-transfer optimizee (paper Sec. 3.5, Figs. 8-9; l2l_tf.problems.style_transfer).
flags.DEFINE_enum("style_image", "ihc", ["ihc", "waves"], "neural_art: the style image (ihc: "
                  "scikit-image's immunohistochemistry photograph, the training style; waves: "
                  "generated, the new style).")
flags.DEFINE_list("content_layers", ["block2_conv1"], "neural_art: feature-network layers of the "
                  "content loss (VGG-19 names, block1_conv1 .. block5_conv4).")
flags.DEFINE_list("style_layers", ["input", "block1_conv1", "block2_conv1", "block3_conv1"],
                  "neural_art: layers of the Gram-matrix style "
                  "loss (input: the image's colours).")
flags.DEFINE_float("content_weight", 10.0, "neural_art: alpha, the weight of the content loss.")
flags.DEFINE_float("style_weight", 3.0, "neural_art: beta, the weight of the style loss.")
flags.DEFINE_float("tv_weight", 3.0, "neural_art: gamma, the weight of the total-variation term.")
flags.DEFINE_enum("feature_network", "random_vgg19", ["vgg19", "random_vgg19"], "neural_art: "
                  "vgg19 (ImageNet weights: downloaded by Keras, or --feature_weights) or the "
                  "offline stand-in random_vgg19 (VGG-19 at 1/--feature_width_divisor width, "
                  "fixed random weights).")
flags.DEFINE_string("feature_weights", None, "neural_art: a Keras weights file of "
                    "VGG19(include_top=False) for --feature_network=vgg19 (default: download).")
flags.DEFINE_integer("feature_width_divisor", 8, "neural_art, random_vgg19: VGG-19's widths are "
                     "divided by this (CPU cost).")
flags.DEFINE_integer("feature_seed", 0, "neural_art, random_vgg19: seed of its weights.")

# Learned optimizer architecture.
flags.DEFINE_list("hidden_sizes", ["20", "20"], "LSTM layer sizes (empty: a linear net).")
flags.DEFINE_enum("preprocessing", "identity", ["identity", "log_and_sign", "normalized_moments"],
                  "Gradient preprocessing: identity, LogAndSign (paper Appendix A), or "
                  "normalized_moments (gradient and momenta over a running RMS; issue 14).")
flags.DEFINE_list("momentum_decays", ["0.5", "0.9", "0.99"], "normalized_moments: the momenta's "
                  "decay rates (one input each).")
flags.DEFINE_float("second_moment_decay", 0.999, "normalized_moments: decay of the running "
                   "second moment.")
flags.DEFINE_float("log_and_sign_p", 10.0, "p of LogAndSign (paper: 10; DeepMind code: 5).")
flags.DEFINE_bool("log_and_sign_clamped", False, "Use the DeepMind code's clamped LogAndSign.")
flags.DEFINE_float("input_scale", 1.0, "Constant scale applied to gradients before the net.")
flags.DEFINE_float("output_scale", 1.0, "Constant scale of the net's output (paper: 0.1 MNIST).")
flags.DEFINE_bool("forget_gate", True, "LSTM with forget gate (2000) or without (1997).")
flags.DEFINE_enum("learned_optimizer", "lstm",
                  ["lstm", "ntm_bfgs", "ntm_lbfgs", "fast_weights", "srwm", "mlp_rule"],
                  "Learned optimizer: the coordinatewise LSTM (with --num_global_cells: LSTM+GAC), "
                  "NTM-BFGS / NTM-L-BFGS (paper Appendix D), a coordinatewise fast-weight "
                  "programmer (Schmidhuber 1992; --fast_rule) or self-referential weight matrix "
                  "(Schmidhuber 1993 / Irie et al. 2022), or the stateless MLP rule of "
                  "Runarsson & Jonsson 2000 (--hidden_sizes: its tanh layers; inputs gradient, "
                  "parameter, log f_t/f_0; no memory).")
flags.DEFINE_integer("fast_size", 8, "fast_weights / srwm: d, the per-coordinate fast matrix is "
                     "d x d (srwm: (1 + 2d + 4) x d).")
flags.DEFINE_integer("fast_hidden_size", 20, "fast_weights: width of the slow net's tanh layer.")
flags.DEFINE_enum("fast_rule", "delta", ["delta", "additive"], "fast_weights: the write rule, the "
                  "delta rule (Schlag et al. 2021) or the 1992 additive outer product.")
flags.DEFINE_enum("srwm_init", "normal", ["normal", "sign_descent"], "srwm: the start of "
                  "meta-training, every meta-parameter random, or sign descent (two features tied "
                  "to the gradient's sign, little self-modification; issue 19).")
flags.DEFINE_integer("read_heads", 1, "NTM-BFGS read heads.")
flags.DEFINE_bool("ntm_normalize", False, "NTM-BFGS: unit-norm read vectors and write keys over "
                  "an instance's coordinates, so reads do not grow with n (issue 19).")
flags.DEFINE_enum("ntm_write_rule", "additive", ["additive", "delta"], "NTM-BFGS memory writes: "
                  "the paper's M += a b^T, or the delta rule M += (a - M b) b^T.")
flags.DEFINE_float("ntm_read_scale", 1.0, "NTM-BFGS: the reads' factor in the update (the "
                   "proposal's is --output_scale); 1 is the paper's form (issue 19).")
flags.DEFINE_bool("ntm_zero_value_init", False, "NTM-BFGS: the controller's weights onto the "
                  "written values start at zero, so the memory starts empty and the optimizer "
                  "as its controller (issue 19).")
flags.DEFINE_integer("write_heads", 3, "NTM-BFGS write heads.")
flags.DEFINE_integer("memory_window", 20, "NTM-L-BFGS: write pairs kept.")
flags.DEFINE_list("num_global_cells", [], "Global averaging cells per LSTM layer (paper Appendix "
                  "D, LSTM+GAC); empty: none.")
flags.DEFINE_enum("initializer", "truncated_normal", ["truncated_normal", "zeros"],
                  "Initialisation of the meta-parameters.")

# Meta-training.
flags.DEFINE_string("output_dir", None, "Directory for checkpoints, logs and results.")
flags.DEFINE_integer("num_epochs", 1000, "Meta-training epochs (fresh problems each).")
flags.DEFINE_integer("horizon", 100, "Optimizee steps per epoch (T).")
flags.DEFINE_integer("truncation", 20, "Steps per truncated-BPTT unroll (K); must divide T.")
flags.DEFINE_integer("meta_batch_size", 1, "Independent problems per meta-step.")
flags.DEFINE_float("meta_learning_rate", 1e-3, "Adam learning rate of the meta-optimizer.")
flags.DEFINE_bool("second_derivatives", False, "Backpropagate through optimizee gradients.")
flags.DEFINE_float("clip_global_norm", None, "Clip meta-gradients to this global norm.")
flags.DEFINE_integer("recompute_chunk", 0, "Gradient checkpointing: recompute the meta-gradient's "
                     "activations in chunks of this many steps (must divide --truncation; 0: off). "
                     "Same result, ~50-70% less activation memory, ~1.5x the time.")
flags.DEFINE_enum("meta_loss_weighting", "uniform", ["uniform", "log"], "Meta-loss per step: "
                  "f (the paper) or log f (each step's relative progress counts alike).")
flags.DEFINE_list("horizon_curriculum", [], "Horizon curriculum, FIRST_EPOCH:HORIZON stages (e.g. "
                  "0:100,1000:200); empty: --horizon throughout. Validation runs --horizon.")
flags.DEFINE_integer("num_validation_members", 4, "With a problem family: the members that model "
                     "selection validates on.")
flags.DEFINE_enum("estimator", "tbptt", ["tbptt", "es", "pes"], "Meta-gradient estimator: "
                  "truncated BPTT (the paper), antithetic ES over whole runs (an epoch is one "
                  "meta-step) or persistent ES over truncations (an epoch is one truncation); "
                  "l2l_tf/meta/estimators.py.")
flags.DEFINE_integer("es_population", 8, "es / pes: particles per meta-step (even with "
                     "--es_antithetic).")
flags.DEFINE_float("es_sigma", 0.01, "es / pes: stddev of the meta-parameter perturbations.")
flags.DEFINE_bool("es_antithetic", True, "es / pes: pairs of opposite perturbations (otherwise "
                  "independent ones against the others' mean loss).")
flags.DEFINE_string("init_from", None, "Meta-training starts from this saved optimizer's "
                    "meta-parameters (a path or pretrained:NAME; same architecture), e.g. to "
                    "fine-tune the paper's LSTM with --estimator=pes at a longer horizon.")
flags.DEFINE_integer("meta_lr_decay_epochs", 0, "Cosine decay of --meta_learning_rate over this "
                     "many epochs, to --meta_lr_final_fraction of it, then constant (0: constant "
                     "throughout, the paper's).")
flags.DEFINE_float("meta_lr_final_fraction", 0.1, "With --meta_lr_decay_epochs: the meta "
                   "learning rate's final fraction of its start.")
flags.DEFINE_integer("validation_every", 100, "Epochs between validations (model selection).")
flags.DEFINE_bool("validation_jit_compile", False, "Meta-training: run validation trajectories "
                  "under XLA (about 1.8x faster on MLPs, slower on conv nets; not part of the "
                  "run's identity).")
flags.DEFINE_integer("num_validation_problems", 100,
                     "Validation problems (model selection and baseline tuning).")
flags.DEFINE_integer("checkpoint_every", 100, "Epochs between checkpoints.")
flags.DEFINE_integer("seed", 0, "Seed of every problem draw and of the meta-parameter init.")
# Scaling meta-training out (issue 17; l2l_tf.meta.replication, README "Scale out").
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                  "Meta-training's tf.distribute strategy: default (one process, one device), "
                  "mirrored (the GPUs of this host, or --cpu_replicas logical CPUs) or "
                  "multi_worker (MultiWorkerMirroredStrategy, the cluster from TF_CONFIG, the same "
                  "command on every worker). The meta-batch is split across the replicas.")
flags.DEFINE_integer("cpu_replicas", 0, "--strategy=mirrored: mirror over this many logical CPUs "
                     "(0: over the host's GPUs).")
flags.DEFINE_float("collective_timeout", 60.0, "--strategy=multi_worker: seconds a collective "
                   "may wait for a peer before the workers stop with an error (keep >= 30: the "
                   "first one also waits for every worker's tracing).")
flags.DEFINE_float("startup_timeout", 120.0, "--strategy=multi_worker: seconds to wait for every "
                   "worker of TF_CONFIG to join before giving up.")
flags.DEFINE_bool("deterministic", True, "Enable TensorFlow op determinism.")
flags.DEFINE_integer("threads", 1, "TensorFlow intra- and inter-op threads (0: TF default).")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_bool("debug", False, "Show the traceback of every error (by default l2l_tf's own "
                  "errors are one line).")

# Evaluation.
flags.DEFINE_string("optimizer_path", None,
                    "A saved learned optimizer: shipped name or directory (train's output_dir).")
flags.DEFINE_alias("optimizer", "optimizer_path")
flags.DEFINE_string("group", None, "For a grouped optimizer: the net to use (export, inspect).")
flags.DEFINE_string("learned_name", "LSTM", "Legend name of the learned optimizer.")
flags.DEFINE_list("learned_optimizers", [], "More learned optimizers in the same comparison, as "
                  "NAME=PATH (shipped name or directory), e.g. LSTM+GAC=pretrained:quadratic_gac.")
flags.DEFINE_integer("num_steps", 100, "Optimizee steps of each evaluation run.")
flags.DEFINE_integer("num_test_problems", 1000, "Test problems per curve.")
flags.DEFINE_list("baselines", ["sgd", "rmsprop", "adam", "nag"], "Tuned baselines to compare.")
flags.DEFINE_list("learning_rate_grid", None, "Baseline learning rates to try (default: 1e-5..10 "
                  "in half-decades).")
flags.DEFINE_integer("eval_chunk_size", 0, "Problems evaluated at once (0: all).")
flags.DEFINE_bool("jit_compile", False, "Compile evaluation runs with XLA.")
flags.DEFINE_string("eval_cache_dir", None, "Where an evaluation caches its finished chunks of "
                    "runs, keyed by everything they depend on, so that a killed figure resumes "
                    "(default: <output_dir>/.<figure>_eval_cache, deleted once the figure is "
                    "written; a directory given here is kept and may be shared by figures).")
flags.DEFINE_list("sweep_hidden_units", [], "Architecture sweep (paper Fig. 6): hidden units per "
                  "layer of the MLP optimizee; empty: no sweep.")
flags.DEFINE_list("sweep_num_layers", ["1", "2"], "Architecture sweep: numbers of hidden layers.")
flags.DEFINE_integer("plot_first_step", 0, "First step shown in the figure (paper Fig. 4 right: "
                     "100).")


def define_figure_flags():
  """Defines `--figure` and `--retrain`, for the entry points that make figures (only: any other
  entry point would accept and ignore them). Defining them twice is a no-op."""
  if "figure" not in FLAGS:
    flags.DEFINE_string("figure", None, "Figure to reproduce (`--list_figures` of l2l_tf.reproduce "
                        "names them).")
    flags.DEFINE_bool("retrain", False, "Meta-train the optimizer first instead of using the "
                      "shipped one.")


UsageError = errors.UsageError  # Bad input from the command line: one line, no traceback.


def configure_tensorflow():
  """Threads and determinism from the flags; TensorFlow's INFO chatter off."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  tf.get_logger().setLevel("ERROR")
  if FLAGS.threads < 0:
    raise UsageError(f"--threads must be >= 0, got {FLAGS.threads}.")
  if FLAGS.threads:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()


def int_list(name):
  try:
    values = [int(h) for h in getattr(FLAGS, name)]
  except ValueError as e:
    raise UsageError(f"--{name} must be comma-separated integers, got "
                     f"{','.join(getattr(FLAGS, name))}.") from e
  if any(v <= 0 for v in values):
    raise UsageError(f"--{name} must be positive, got {','.join(getattr(FLAGS, name))}.")
  return values


def problem_config() -> dict:
  if FLAGS.problem == "quadratic":
    return {"name": "quadratic", "num_dims": FLAGS.num_dims, "family": FLAGS.quadratic_family,
            "init_stddev": FLAGS.init_stddev}
  if FLAGS.problem in ("mnist", "fashion_mnist"):
    require_positive("batch_size")
    return {"name": FLAGS.problem, "hidden_sizes": int_list("optimizee_hidden_sizes"),
            "activation": FLAGS.activation, "batch_size": FLAGS.batch_size,
            "init_stddev": FLAGS.init_stddev}
  if FLAGS.problem in CONV_PROBLEMS:
    require_positive("batch_size", "kernel_size", "image_size")
    labels = None
    if FLAGS.labels:
      try:
        labels = [int(l) for l in FLAGS.labels]
      except ValueError as e:
        raise UsageError(f"--labels must be comma-separated integers, got "
                         f"{','.join(FLAGS.labels)}.") from e
    return {"name": FLAGS.problem, "conv_channels": int_list("conv_channels"),
            "kernel_size": FLAGS.kernel_size, "fc_sizes": int_list("fc_sizes"),
            "image_size": FLAGS.image_size, "labels_subset": labels,
            "batch_size": FLAGS.batch_size, "init_stddev": FLAGS.init_stddev,
            "batch_norm": FLAGS.batch_norm}
  if FLAGS.problem == "neural_art":
    require_positive("image_size")
    for name in ("content_weight", "style_weight", "tv_weight"):
      if not getattr(FLAGS, name) >= 0:
        raise UsageError(f"--{name} must be >= 0, got {getattr(FLAGS, name)}.")
    divisor = FLAGS.feature_width_divisor
    if FLAGS.feature_network == "vgg19":
      if FLAGS["feature_width_divisor"].present and divisor != 1:
        raise UsageError("--feature_width_divisor is for the stand-in random_vgg19; the ImageNet "
                         "vgg19 has its full width.")
      divisor = 1
    elif FLAGS.feature_weights:
      raise UsageError("--feature_weights is for --feature_network=vgg19 (random_vgg19 draws "
                       "its weights from --feature_seed).")
    return {"name": "neural_art", "image_size": FLAGS.image_size,
            "style_image": FLAGS.style_image, "content_layers": list(FLAGS.content_layers),
            "style_layers": list(FLAGS.style_layers), "content_weight": FLAGS.content_weight,
            "style_weight": FLAGS.style_weight, "tv_weight": FLAGS.tv_weight,
            "feature_network": FLAGS.feature_network, "feature_weights": FLAGS.feature_weights,
            "feature_width_divisor": divisor, "feature_seed": FLAGS.feature_seed}
  return {"name": FLAGS.problem}


def make_problem(split: str = "train", **overrides):
  """The optimizee family of the flags (with `overrides` of its config); data-set problems use
  the images of `split`."""
  from l2l_tf import problems  # pylint: disable=g-import-not-at-top
  return problems.make_problem(dict(problem_config(), **overrides), split=split,
                               data_dir=FLAGS.data_dir)


def optimizer_config() -> dict:
  """The learned optimizer's architecture from the flags."""
  hidden = int_list("hidden_sizes")
  if FLAGS.preprocessing == "log_and_sign":
    pre = {"name": "log_and_sign", "p": FLAGS.log_and_sign_p,
           "clamped": FLAGS.log_and_sign_clamped, "scale": FLAGS.input_scale}
  elif FLAGS.preprocessing == "normalized_moments":
    pre = {"name": "normalized_moments", "momentum_decays": float_list("momentum_decays"),
           "second_moment_decay": FLAGS.second_moment_decay}
  else:
    pre = {"name": "identity", "scale": FLAGS.input_scale}
  config = {"name": "lstm", "hidden_sizes": hidden, "preprocessing": pre,
            "output_scale": FLAGS.output_scale, "forget_bias": 1.0,
            "forget_gate": FLAGS.forget_gate, "cell_clip": None, "initializer": FLAGS.initializer,
            "seed": FLAGS.seed, "dtype": "float32"}
  if FLAGS.num_global_cells:
    cells = [int(c) for c in FLAGS.num_global_cells] if all(
        c.strip().isdigit() for c in FLAGS.num_global_cells) else None
    if cells is None or len(cells) != len(hidden) or any(c > h for c, h in zip(cells, hidden)):
      raise UsageError(f"--num_global_cells needs one count per LSTM layer, each at most the "
                       f"layer's size; got {','.join(FLAGS.num_global_cells)} for "
                       f"--hidden_sizes={','.join(map(str, hidden))}.")
    if any(cells):
      config.update(name="lstm_gac", num_global_cells=cells, instance_axis=True)
  if FLAGS.srwm_init != "normal" and FLAGS.learned_optimizer != "srwm":
    raise UsageError(f"--srwm_init={FLAGS.srwm_init} is for --learned_optimizer=srwm; drop it "
                     f"for --learned_optimizer={FLAGS.learned_optimizer}.")
  if FLAGS.learned_optimizer in ("fast_weights", "srwm"):
    require_positive("fast_size", "fast_hidden_size")
    config = {"name": FLAGS.learned_optimizer, "fast_size": FLAGS.fast_size,
              "preprocessing": pre, "output_scale": FLAGS.output_scale, "seed": FLAGS.seed,
              "dtype": "float32"}
    if FLAGS.learned_optimizer == "fast_weights":
      config.update(hidden_size=FLAGS.fast_hidden_size, rule=FLAGS.fast_rule)
    if FLAGS.srwm_init != "normal":  # Only srwm gets here with it (refused above otherwise).
      config["init"] = FLAGS.srwm_init
  elif FLAGS.learned_optimizer == "mlp_rule":
    if not hidden:
      raise UsageError("--learned_optimizer=mlp_rule needs --hidden_sizes (its tanh layers).")
    config = {"name": "mlp_rule", "hidden_sizes": hidden, "preprocessing": pre,
              "output_scale": FLAGS.output_scale, "instance_axis": True, "seed": FLAGS.seed,
              "dtype": "float32"}
  elif FLAGS.learned_optimizer != "lstm":
    require_positive("read_heads", "write_heads", "memory_window")
    config = {"name": FLAGS.learned_optimizer, "hidden_sizes": hidden,
              "num_global_cells": config.get("num_global_cells", [0] * len(hidden)),
              "read_heads": FLAGS.read_heads, "write_heads": FLAGS.write_heads,
              "memory": "dense" if FLAGS.learned_optimizer == "ntm_bfgs" else "window",
              "window": FLAGS.memory_window, "preprocessing": pre,
              "output_scale": FLAGS.output_scale, "seed": FLAGS.seed, "dtype": "float32",
              "instance_axis": True}
    if FLAGS.ntm_normalize:  # Only when set, as NTMBFGS.get_config: shipped configs still match.
      config["normalize"] = True
    if FLAGS.ntm_write_rule != "additive":
      config["write_rule"] = FLAGS.ntm_write_rule
    if FLAGS.ntm_read_scale != 1.0:
      config["read_scale"] = FLAGS.ntm_read_scale
    if FLAGS.ntm_zero_value_init:
      config["zero_value_init"] = True
  if FLAGS.problem in CONV_PROBLEMS and not FLAGS.conv_lstm_shared:
    config = conv_grouped_config(config)
  return config


def conv_grouped_config(net: dict) -> dict:
  """Two copies of the net `net` for the conv optimizee: one for its conv kernels, one for its
  other parameters (paper Sec. 3.4; DeepMind's `cifar-multi`), initialised from different seeds."""
  from l2l_tf.problems import conv  # pylint: disable=g-import-not-at-top
  problem = problem_config()
  names = conv.param_names(len(problem["conv_channels"]), len(problem["fc_sizes"]),
                           problem["batch_norm"])
  nets = {conv.CONV_GROUP: net, conv.FC_GROUP: dict(net, seed=net["seed"] + 1)}
  return {"name": "grouped", "optimizers": nets, "assignment": conv.parameter_groups(names)}


def float_list(name):
  try:
    return [float(v) for v in getattr(FLAGS, name)]
  except ValueError as e:
    raise UsageError(f"--{name} must be comma-separated numbers, got "
                     f"{','.join(getattr(FLAGS, name))}.") from e


FAMILY_FLAGS = ("family_hidden_widths", "family_num_layers", "family_activations",
                "family_batch_sizes", "family_init_stddevs")


def make_training_problem(split: str):
  """What meta-training draws from on `split`: the flags' problem, or with any --family_* flag a
  `ProblemFamily` of MLPs, and on "train" with --objective_log10_scale_range each one scaled."""
  from l2l_tf.problems import family  # pylint: disable=g-import-not-at-top
  scale = FLAGS.objective_log10_scale_range
  if scale < 0:
    raise UsageError(f"--objective_log10_scale_range must be >= 0, got {scale}.")
  wrap = ((lambda p: family.ScaledObjective(p, scale)) if scale and split == "train"
          else (lambda p: p))
  if not any(getattr(FLAGS, name) for name in FAMILY_FLAGS):
    return wrap(make_problem(split))
  base = problem_config()
  if FLAGS.problem not in ("mnist", "fashion_mnist"):
    raise UsageError("--family_* flags sample MLP optimizees: use them with --problem=mnist or "
                     "fashion_mnist.")
  hidden = base["hidden_sizes"]
  activations = FLAGS.family_activations or [base["activation"]]
  unknown = sorted(set(activations) - {"sigmoid", "relu"})
  if unknown:
    raise UsageError(f"--family_activations must be sigmoid or relu, got {','.join(unknown)}.")
  members = family.mlp_family_members(
      {"name": FLAGS.problem}, int_list("family_hidden_widths") or [hidden[0] if hidden else 20],
      int_list("family_num_layers") or [len(hidden)], activations,
      int_list("family_batch_sizes") or [base["batch_size"]],
      float_list("family_init_stddevs") or [base["init_stddev"]])
  if scale and split == "train":  # Recorded in the run's identity with the members.
    members = [dict(m, objective_log10_scale_range=scale) for m in members]
  data = make_problem(split)  # One copy of the images, shared by every member.
  build = lambda c: wrap(data.variant(c["hidden_sizes"], c["activation"], c["batch_size"],
                                      c["init_stddev"]))
  return family.ProblemFamily(members, build)


def horizon_curriculum():
  stages = []
  for stage in FLAGS.horizon_curriculum:
    try:
      start, horizon = (int(v) for v in stage.split(":"))
    except ValueError as e:
      raise UsageError(f"--horizon_curriculum takes FIRST_EPOCH:HORIZON stages, e.g. "
                       f"0:100,1000:200; got {','.join(FLAGS.horizon_curriculum)}.") from e
    stages.append((start, horizon))
  return tuple(stages)


def train_config():
  from l2l_tf import meta  # pylint: disable=g-import-not-at-top
  return meta.TrainConfig(
      num_epochs=FLAGS.num_epochs, horizon=FLAGS.horizon, truncation=FLAGS.truncation,
      meta_batch_size=FLAGS.meta_batch_size, meta_learning_rate=FLAGS.meta_learning_rate,
      second_derivatives=FLAGS.second_derivatives, clip_global_norm=FLAGS.clip_global_norm,
      validation_every=FLAGS.validation_every,
      num_validation_problems=FLAGS.num_validation_problems,
      checkpoint_every=FLAGS.checkpoint_every, seed=FLAGS.seed,
      recompute_chunk=FLAGS.recompute_chunk, meta_loss_weighting=FLAGS.meta_loss_weighting,
      horizon_curriculum=horizon_curriculum(),
      num_validation_members=FLAGS.num_validation_members,
      validation_jit_compile=FLAGS.validation_jit_compile, estimator=FLAGS.estimator,
      es_population=FLAGS.es_population, es_sigma=FLAGS.es_sigma,
      es_antithetic=FLAGS.es_antithetic, init_from=FLAGS.init_from or "",
      meta_lr_decay_epochs=FLAGS.meta_lr_decay_epochs,
      meta_lr_final_fraction=FLAGS.meta_lr_final_fraction)


def learning_rate_grid():
  from l2l_tf.evaluation import tuning  # pylint: disable=g-import-not-at-top
  if not FLAGS.learning_rate_grid:
    return tuning.DEFAULT_LEARNING_RATE_GRID
  try:
    grid = tuple(float(x) for x in FLAGS.learning_rate_grid)
  except ValueError as e:
    raise UsageError(f"--learning_rate_grid must be numbers, got "
                     f"{','.join(FLAGS.learning_rate_grid)}.") from e
  if any(not lr > 0 for lr in grid):
    raise UsageError(f"--learning_rate_grid values must be positive, got {grid}.")
  return grid


def require_positive(*names):
  for name in names:
    value = getattr(FLAGS, name)
    if value is None or value <= 0:
      raise UsageError(f"--{name} must be positive, got {value}.")


def require_no_arguments(argv):
  """Entry points take flags only: anything else is a usage error."""
  if len(argv) > 1:
    raise UsageError(f"Unexpected arguments {argv[1:]}; flags take the form --name=value.")


def require_optimizer_path():
  if not FLAGS.optimizer_path:
    raise UsageError("--optimizer is required: a shipped name (e.g. quadratic) or a saved "
                     "optimizer's directory.")


def require_writable_dir(path) -> Path:
  if not path:
    raise UsageError("--output_dir is required.")
  path = Path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write_test"
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise UsageError(f"--output_dir={path} is not writable ({e.strerror}); choose another "
                     "directory.") from e
  return path


def command_line(drop_flags=()) -> str:
  """The command that is running, for the provenance of results and trained optimizers:
  `python -m <package>.<module>` for the module file in sys.argv[0] (l2l_tf's, the experiments'
  beside it, sub-packages included), without the flags named in `drop_flags` (e.g. ones that do
  not change what the command produces)."""
  script = Path(sys.argv[0]).resolve()
  try:
    parts = list(script.relative_to(REPO_ROOT).with_suffix("").parts)
  except ValueError:  # Not a file of this repository (e.g. a test runner): name the stem only.
    parts = ["l2l_tf", script.stem]
  if parts[-1] == "__main__":
    parts = parts[:-1]
  if not parts or not (REPO_ROOT / parts[0] / "__init__.py").is_file():
    parts = ["l2l_tf"] + parts
  dropped = tuple(f"--{p}{name}" for name in drop_flags for p in ("", "no"))
  args = [a for a in sys.argv[1:] if a.split("=", 1)[0] not in dropped]
  return " ".join(["python", "-m", ".".join(parts)] + [shlex.quote(a) for a in args])


def run_main(main):
  """Wraps an entry point's main: l2l_tf's own errors (`l2l_tf.errors.Error`) become one line on
  stderr and exit status 1; any other exception keeps its traceback, and with `--debug` so does
  every error."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except errors.Error as e:
      if FLAGS.is_parsed() and FLAGS.debug:
        raise
      print(f"error: {one_line(e)}", file=sys.stderr)
      sys.exit(1)

  return wrapped


def one_line(error: errors.Error) -> str:
  """The message of an l2l_tf error; a missing data set also says how to fetch it."""
  tried = getattr(error, "tried", None)  # l2l_tf.data.DataNotFoundError: a data set is missing.
  if not tried:
    return str(error)
  sources = "; ".join(f"{where}: {reason}" for where, reason in tried)
  what = re.sub(r"[;:,\s]*tried:?\s*$", "", str(error).splitlines()[0])
  hint = getattr(error, "hint", None) or ("Run `python -m l2l_tf.data.prepare` (or `make data`) "
                                          "to fetch and cache it.")
  return f"{what} (tried {sources}). {hint}"
