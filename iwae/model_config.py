"""The network's shape: what a checkpoint's config names and the tensors it must hold. No torch here, so that a
checkpoint can be read and checked (``iwae.checkpoints``) before torch is imported."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    input_dim: int = 784  # pixels per image (784 for MNIST, 64 for sklearn digits)
    hidden_dim: int = 200  # width of both hidden layers, in encoder and decoder
    latent_dim: int = 2  # dimension of z; 2 makes p(z|x) computable on a grid

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        values = {k: d[k] for k in ("input_dim", "hidden_dim", "latent_dim")}
        for key, value in values.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        return cls(**values)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The state dict of ``iwae.model.VAE(self)``: name -> shape (tests/test_model.py checks the two agree).
        Encoder D-H-H-2L, decoder L-H-H-D, each a Linear-Tanh-Linear-Tanh-Linear stack."""
        h, d, latent = self.hidden_dim, self.input_dim, self.latent_dim
        shapes = {}
        for part, sizes in (("encoder", (d, h, h, 2 * latent)), ("decoder", (latent, h, h, d))):
            for layer, n_in, n_out in zip((0, 2, 4), sizes[:-1], sizes[1:], strict=True):
                shapes[f"{part}.{layer}.weight"] = (n_out, n_in)
                shapes[f"{part}.{layer}.bias"] = (n_out,)
        return shapes
