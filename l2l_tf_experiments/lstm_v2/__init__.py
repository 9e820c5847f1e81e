"""LSTM v2 (issue 14): the paper's optimizer meta-trained to generalise, and its ablation."""
