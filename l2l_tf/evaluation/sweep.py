"""The architecture sweep of paper Fig. 6: final loss against the optimizee's hidden units."""


def final_losses(results: dict, hidden_sizes) -> dict:
  """One architecture's entry: every optimizer's final mean loss, its 95% CI and learning rate."""
  return {"hidden_sizes": list(hidden_sizes), "optimizers": {
      name: {"final_mean": c["mean"][-1], "ci95_low": c["ci95_low"][-1],
             "ci95_high": c["ci95_high"][-1], "learning_rate": c["learning_rate"],
             "divergence_rate": c.get("divergence_rate", 0.0)}
      for name, c in results["optimizers"].items()}}
