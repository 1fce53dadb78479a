"""Backbones F(x_in, c_noise, labels=None, c_alpha=None, return_bottleneck=False) -> F or (F, features)."""
