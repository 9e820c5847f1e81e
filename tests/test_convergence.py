"""DeepMind's convergence test: a learned optimizer meta-trained on x^2 drives it below 1e-5."""

import numpy as np

from l2l_tf import meta, optimizers, problems


def test_linear_learned_optimizer_converges_on_square(tmp_path):
  problem = problems.Square()
  # DeepMind's `simple` configuration: no hidden layers (update = w . grad + b), zero init.
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(), initializer="zeros")
  config = meta.TrainConfig(num_epochs=100, horizon=100, truncation=20, meta_learning_rate=1e-2,
                            validation_every=10, num_validation_problems=1, checkpoint_every=100)
  trainer = meta.MetaTrainer(problem, opt, config, tmp_path, log_fn=lambda m: None)
  assert trainer.validation_losses()[-1] > 0.9  # Untrained: zero updates.
  summary = trainer.train(progress=False)
  assert summary["best_validation_final_loss"] < 1e-5
  trained = optimizers.load_optimizer(summary["optimizer_dir"])
  instance, params = problem.sample(1, problems.split_seed(0, "test"))
  from l2l_tf.evaluation import curves  # pylint: disable=g-import-not-at-top
  losses = curves.evaluate_losses(problem, trained, instance, params, 100)
  assert np.all(losses[:, -1] < 1e-5)
