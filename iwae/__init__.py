"""Importance weighted autoencoders with a 2-D latent: model, bounds, posteriors, checkpoints."""
