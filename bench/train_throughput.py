"""Training throughput of IWAE (k=50, batch 100, 784-dim inputs) against two references, in one run.

    python bench/train_throughput.py [--threads N] [--repeats R] [--warmup W] [--inner I] [--json PATH]

Prints, as medians over R timed repetitions (after warm-up), in samples x K per second:
- iwae: one real training step, ``training_loss(VAE(ModelConfig()), x, "iwae", 50)`` + backward + Adam step, on
  random binary images (the encoder runs once per image; only the latent samples are expanded);
- matmul only: the bare matrix products of exactly the same shapes, for every Linear layer its forward product
  and its two backward products (grad input, grad weight): encoder on (100, 784), decoder on (5000, 2) ->
  (5000, 200) -> (5000, 200) -> (5000, 784). A floor on the step's time: the ratio says how much of a training
  step is spent outside the big products (activations, the Bernoulli likelihood, logsumexp, Adam, autograd);
- naive loop: the issue's reference, a loop over the K samples that pushes the whole minibatch through the encoder
  and the decoder once per sample (so each image K times through the encoder), stacking the K log weights;
- naive, vectorized: each image pushed K times through the encoder in one batch (``x.repeat_interleave(K)``), then
  the same decoder and loss. Its distance to the iwae step is the encoder's extra work alone: the encoder and the
  decoder have about the same FLOPs per pass, so by FLOP count this speedup cannot exceed about 2x.
All three losses are computed on the same samples (checked before timing).
``--json PATH`` also writes the headline figures as rows for bench/run_all.py (``bench_row``): the step time, its
throughput as a fraction of the matmul-only one (target at least 0.7), the matmuls' GFLOP/s, and the speedups over
the naive loop (target 3x) and over the vectorized naive layout.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run_all import bench_row, write_rows  # noqa: E402
from iwae import testset  # noqa: E402
from iwae.bounds import iwae_bound, training_loss  # noqa: E402
from iwae.checkpoints import load_checkpoint  # noqa: E402
from iwae.cpu import flush_denormals, keep_freed_memory  # noqa: E402
from iwae.model import LOG_2PI, VAE, ModelConfig, bernoulli_log_likelihood, standard_normal_log_density  # noqa: E402

BATCH, K = 100, 50
BENCHMARK = "training throughput"
TARGET_ROOFLINE_FRACTION = 0.7  # iwae step throughput / matmul-only throughput, at least
TRAINED = "iwae, trained weights (checkpoint)"
TRAINED_NO_FLUSH = "iwae, trained weights, denormals kept"
TARGET_SPEEDUP = 3.0  # encoder-once layout over the naive one, at least


def timed_interleaved(fns: dict, repeats: int, warmup: int, inner: int) -> dict[str, list[float]]:
    """Seconds per call of each fn: `warmup` untimed calls each, then `repeats` rounds in which every fn is timed
    over `inner` calls in turn, so that a slow spell of the machine hits all variants alike (the ratios are
    what this benchmark reports)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner)
    return times


def make_step(model: VAE, opt: torch.optim.Optimizer, x: torch.Tensor, gen: torch.Generator):
    def step():
        loss, _ = training_loss(model, x, "iwae", K, "standard", gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def naive_loss(model: VAE, x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """-L_K with every image repeated K times through the encoder (what the project avoids)."""
    xr = x.repeat_interleave(k, dim=0)  # (B*K, D)
    mu, logvar = model.encode(xr)  # (B*K, L): K identical encoder passes per image
    eps = torch.randn(mu.shape, generator=gen, dtype=x.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps
    logits = model.decode_logits(z)  # (B*K, D)
    log_q = -0.5 * (LOG_2PI + logvar + eps**2).sum(-1)
    log_w = bernoulli_log_likelihood(xr, logits.unsqueeze(1)).squeeze(1) + standard_normal_log_density(z) - log_q
    return -iwae_bound(log_w.view(x.shape[0], k)).mean()


def naive_loop_loss(model: VAE, x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """-L_K one sample at a time: K passes of the minibatch through encoder and decoder (the textbook loop)."""
    eps_all = torch.randn((x.shape[0], k, model.config.latent_dim), generator=gen, dtype=x.dtype)  # as log_weights
    columns = []
    for j in range(k):
        mu, logvar = model.encode(x)  # (B, L): the encoder again for every sample
        eps = eps_all[:, j]
        z = mu + torch.exp(0.5 * logvar) * eps
        log_q = -0.5 * (LOG_2PI + logvar + eps**2).sum(-1)
        columns.append(model.log_joint(x, z.unsqueeze(1)).squeeze(1) - log_q)
    return -iwae_bound(torch.stack(columns, dim=1)).mean()


def with_flush(step, flush: bool):
    """The step with this thread's denormal flushing set as asked (restored to on, as training runs, after)."""

    def run():
        torch.set_flush_denormal(flush)
        try:
            step()
        finally:
            torch.set_flush_denormal(True)

    return run


def trained_model(path: Path) -> tuple[VAE, torch.optim.Optimizer]:
    """A checkpoint's weights, trainable: steps on them meet the tiny normalized weights of a trained model."""
    model = load_checkpoint(path).model
    for param in model.parameters():
        param.requires_grad_(True)
    model.train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-4)


@torch.no_grad()
def denormal_share(model: VAE, x: torch.Tensor, gen: torch.Generator) -> float:
    """Share of the normalized importance weights below float32's smallest normal number (1.18e-38)."""
    torch.set_flush_denormal(False)
    try:
        w = torch.softmax(model.log_weights(x, K, gen).log_w, -1)
        return ((w > 0) & (w < torch.finfo(torch.float32).tiny)).float().mean().item()
    finally:
        torch.set_flush_denormal(True)


def make_naive_step(model: VAE, opt: torch.optim.Optimizer, x: torch.Tensor, gen: torch.Generator, loss_fn=None):
    loss_fn = loss_fn or naive_loss

    def step():
        loss = loss_fn(model, x, K, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def layer_shapes(config: ModelConfig) -> list[tuple[int, int, int]]:
    """(rows, in_features, out_features) for every Linear layer of one IWAE step."""
    d, h, lat = config.input_dim, config.hidden_dim, config.latent_dim
    enc = [(BATCH, d, h), (BATCH, h, h), (BATCH, h, 2 * lat)]
    dec = [(BATCH * K, lat, h), (BATCH * K, h, h), (BATCH * K, h, d)]
    return enc + dec


def make_matmuls(config: ModelConfig, gen: torch.Generator):
    operands = []
    for m, n_in, n_out in layer_shapes(config):
        x = torch.randn(m, n_in, generator=gen)
        w = torch.randn(n_out, n_in, generator=gen)
        g = torch.randn(m, n_out, generator=gen)
        operands.append((x, w, g))

    def run():
        for x, w, g in operands:
            x @ w.T  # forward: (m, in) x (in, out)
            g @ w  # grad of the input: (m, out) x (out, in)
            g.T @ x  # grad of the weight: (out, m) x (m, in)

    flops = sum(3 * 2 * m * n_in * n_out for m, n_in, n_out in layer_shapes(config))
    return run, flops


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=15, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    p.add_argument("--inner", type=int, default=2, help="calls per timed repetition")
    p.add_argument("--json", type=Path, default=None, help="also write the headline figures as JSON rows here")
    p.add_argument("--checkpoint", type=Path, default=Path(__file__).resolve().parents[1] / "checkpoints" /
                   "iwae-k50.safetensors", help="trained weights for the trained-weights rows (skipped if absent)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = "glibc keeps freed memory, as python -m iwae.train sets" if keep_freed_memory() else "default allocator"
    flushing = "denormals flushed, as training does" if flush_denormals() else "this CPU cannot flush denormals"
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    config = ModelConfig()
    x = torch.bernoulli(torch.full((BATCH, config.input_dim), 0.13), generator=gen)  # MNIST-like ink density

    model = VAE(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    naive_model = VAE(config)
    naive_model.load_state_dict(model.state_dict())
    naive_opt = torch.optim.Adam(naive_model.parameters(), lr=1e-3, eps=1e-4)
    with torch.no_grad():  # the two losses compute the same bound (same samples): a correctness check on the bench
        a = training_loss(model, x, "iwae", K, "standard", torch.Generator().manual_seed(1))[0]
        b = naive_loss(naive_model, x, K, torch.Generator().manual_seed(1))
        c = naive_loop_loss(naive_model, x, K, torch.Generator().manual_seed(1))
    loop_model = VAE(config)
    loop_model.load_state_dict(model.state_dict())
    loop_opt = torch.optim.Adam(loop_model.parameters(), lr=1e-3, eps=1e-4)
    matmuls, flops = make_matmuls(config, gen)

    trained = {}
    if args.checkpoint.is_file():
        x_test = testset.load()[0][:BATCH]  # real digits: a trained model's weights are realistic only on them
        tmodel, topt = trained_model(args.checkpoint)
        share = denormal_share(tmodel, x_test, torch.Generator().manual_seed(2))
        smodel, sopt = trained_model(args.checkpoint)
        trained = {
            TRAINED: make_step(tmodel, topt, x_test, gen),
            TRAINED_NO_FLUSH: with_flush(make_step(smodel, sopt, x_test, gen), False),
        }

    t_start = time.perf_counter()
    variants = {
        "iwae (encoder once per image)": make_step(model, opt, x, gen),
        **trained,
        "matmul only (same shapes, fwd+bwd)": matmuls,
        "naive, vectorized (image repeated K times)": make_naive_step(naive_model, naive_opt, x, gen),
        "naive loop (K passes of the minibatch)": make_naive_step(loop_model, loop_opt, x, gen, naive_loop_loss),
    }
    times = timed_interleaved(variants, args.repeats, args.warmup, args.inner)
    results = {name: statistics.median(t) for name, t in times.items()}
    # The ratios per round, then their median: robust to drift in the machine's speed between rounds.
    roofline = statistics.median(m / i for m, i in zip(times["matmul only (same shapes, fwd+bwd)"],
                                                       times["iwae (encoder once per image)"], strict=True))
    total = time.perf_counter() - t_start

    samples = BATCH * K
    t_iwae = results["iwae (encoder once per image)"]
    t_mm = results["matmul only (same shapes, fwd+bwd)"]
    t_naive = results["naive, vectorized (image repeated K times)"]
    t_loop = results["naive loop (K passes of the minibatch)"]
    print(
        f"IWAE training throughput: k={K}, batch {BATCH}, {config.input_dim}-{config.hidden_dim}-"
        f"{config.hidden_dim}-{config.latent_dim} tanh, Adam; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); median of {args.repeats} interleaved rounds of "
        f"{args.inner} calls, after {args.warmup} warm-up; {allocator}; {flushing}"
    )
    print(f"(same-sample check: -L_K {a.item():.4f}, naive vectorized {b.item():.4f}, naive loop {c.item():.4f})")
    print()
    print(f"{'variant':<38} {'ms/step':>9} {'samples x K / s':>16} {'GFLOP/s':>9}")
    for name, t in results.items():
        gflops = f"{flops / t / 1e9:9.1f}" if name.startswith("matmul") else f"{'':>9}"
        print(f"{name:<38} {t * 1e3:9.1f} {samples / t:16,.0f} {gflops}")
    print()
    print(f"iwae throughput / matmul-only throughput: {roofline:.3f} (median of the per-round ratios; target "
          f"{TARGET_ROOFLINE_FRACTION}): the products are {100 * roofline:.0f}% of a training step")
    print(f"speedup over the naive loop: {t_loop / t_iwae:.2f}x (target {TARGET_SPEEDUP:g}x)")
    print(f"speedup over the vectorized naive layout: {t_naive / t_iwae:.2f}x (the encoder's share: ~2x at most)")
    if trained:
        t_tr, t_tr_nf = results[TRAINED], results[TRAINED_NO_FLUSH]
        print(f"trained weights ({args.checkpoint.name}, first {BATCH} shipped test images): "
              f"{100 * share:.1f}% of the normalized weights are denormal floats; a step takes {t_tr * 1e3:.1f} ms "
              f"with them flushed, {t_tr_nf * 1e3:.1f} ms kept ({t_tr_nf / t_tr:.2f}x slower)")
    print(f"benchmark time: {total:.1f} s")
    if args.json:
        protocol = (f"random init, k={K}, batch {BATCH}, median of {args.repeats} interleaved rounds x {args.inner}, "
                    f"{torch.get_num_threads()} thread(s)")
        write_rows(args.json, [
            bench_row(BENCHMARK, f"IWAE k={K} training step (fwd+bwd+Adam)", t_iwae * 1e3, "ms", protocol=protocol),
            bench_row(BENCHMARK, "step throughput / matmul roofline", roofline, "ratio",
                      TARGET_ROOFLINE_FRACTION, "min", protocol),
            bench_row(BENCHMARK, "matmul roofline (same shapes, fwd+bwd)", flops / t_mm / 1e9, "GFLOP/s",
                      protocol=protocol),
            bench_row(BENCHMARK, "speedup over the naive loop (K passes)", t_loop / t_iwae, "x", TARGET_SPEEDUP, "min",
                      protocol),
            bench_row(BENCHMARK, "speedup over naive vectorized (image x K)", t_naive / t_iwae, "x", protocol=protocol),
        ] + ([
            bench_row(BENCHMARK, f"IWAE k={K} step on trained weights ({args.checkpoint.name})",
                      results[TRAINED] * 1e3, "ms", protocol=protocol.replace("random init", "trained weights")),
            bench_row(BENCHMARK, "same step with denormals kept / flushed",
                      results[TRAINED_NO_FLUSH] / results[TRAINED], "x", protocol=protocol),
        ] if trained else []))
    return 0 if math.isfinite(t_iwae) else 1


if __name__ == "__main__":
    sys.exit(main())
