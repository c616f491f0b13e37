"""The decoder's log p(x|z) kernel (iwae/decoding.py) with its tanh as 2 sigmoid(2a) - 1 against torch.tanh.

    python bench/decoding_speed.py [--checkpoint checkpoints/iwae-k50.safetensors] [--repeats 15]

One torch thread, as each of the app's decoding tasks. Prints the two tanh's largest difference on [-10, 10]; then,
for the points the app decodes per model (a pool of 20,000 draws, the Resampling page's 16 x 5,000 at K = 5000), the
median ms of the kernel with each tanh (interleaved), and each one's largest difference from the formula in float64.
Then where one block of the kernel's time goes (BLOCK_ROWS points, the app's kernel): each layer's matrix product with
its GFLOP/s, the two tanh, the softplus and its sum, and the whole block (its products' FLOPs over its time): how far
the kernel is from the speed of the matrix products alone, the most one core can do for these exact decodes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from iwae import decoding, testset  # noqa: E402
from iwae.catalog import load_checkpoint  # noqa: E402
from iwae.cpu import flush_denormals  # noqa: E402
from iwae.model import bernoulli_log_likelihood  # noqa: E402


def _torch_tanh(a: torch.Tensor) -> torch.Tensor:
    return torch.tanh(a)


def kernel_with(tanh) -> torch.jit.ScriptFunction:
    """The kernel's block loop compiled with another tanh (a new function object: TorchScript caches by object)."""
    rows = decoding._log_likelihood_rows
    scope = dict(rows.__globals__, _tanh=tanh)
    return torch.jit.script(types.FunctionType(rows.__code__, scope, rows.__name__, rows.__defaults__))


def median_ms(calls: dict, repeats: int) -> dict[str, float]:
    """Median ms of each call, the calls interleaved (this shared VM's speed drifts between seconds)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for f in calls.values():
        f()
    for _ in range(repeats):
        for name, f in calls.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def decode(loop, decoder, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    first, second, last = decoder[0], decoder[2], decoder[4]
    image = torch.zeros(len(z), dtype=torch.int64)
    return loop(z, image, (x @ last.weight).contiguous(), (x @ last.bias).contiguous(), first.weight, first.bias,
                second.weight, second.bias, last.weight, last.bias, decoding.BLOCK_ROWS)


def block_parts(decoder, rows: int, repeats: int) -> None:
    """Median ms of each step of one block of the kernel, interleaved, and the GFLOP/s of the products and the block."""
    layers = (decoder[0], decoder[2], decoder[4])
    z = torch.randn(rows, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        inputs = [z]  # each layer's input: z, then the tanh of the previous layer's product
        for layer in layers[:-1]:
            inputs.append(decoding._tanh(F.linear(inputs[-1], layer.weight, layer.bias)))
        logits = F.linear(inputs[-1], layers[-1].weight, layers[-1].bias)
        parts, flops = {}, {}
        for number, (layer, h) in enumerate(zip(layers, inputs, strict=True), 1):
            name = f"layer {number} product ({layer.in_features} -> {layer.out_features})"
            parts[name] = lambda layer=layer, h=h: F.linear(h, layer.weight, layer.bias)
            flops[name] = 2 * rows * layer.weight.numel()
        parts["two tanh (2 sigmoid(2a) - 1)"] = lambda: [decoding._tanh(h.clone()) for h in inputs[1:]]
        parts["softplus and its sum"] = lambda: F.softplus(logits).sum(1)
        whole = "the whole block (the kernel)"
        parts[whole] = lambda: decode(decoding._scripted(), decoder, torch.zeros(1, layers[-1].out_features), z)
        flops[whole] = sum(flops.values())
        ms = median_ms(parts, repeats)
    print(f"one block of {rows:,} points, one thread, median of {repeats}:")
    for name, t in ms.items():
        rate = f"   {flops[name] / t / 1e6:6.1f} GFLOP/s" if name in flops else ""
        print(f"  {name:<30} {t:6.2f} ms{rate}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "iwae-k50.safetensors"))
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    flush_denormals()

    grid = torch.linspace(-10, 10, 2048 * 200)
    gap = (decoding._tanh(grid.clone()) - torch.tanh(grid)).abs().max()
    print(f"largest |_tanh - torch.tanh| on [-10, 10]: {gap:.1e}")

    model = load_checkpoint(args.checkpoint).model
    images, _ = testset.load()
    x = images[7:8].float()
    kernels = {"torch.tanh": kernel_with(_torch_tanh), "_tanh (the app's)": decoding._scripted()}
    print(f"{Path(args.checkpoint).stem}, test image 7, z ~ N(0, I), one thread, median of {args.repeats}:")
    for points in (20_000, 80_000):
        z = torch.randn(points, 2, generator=torch.Generator().manual_seed(0))
        exact = bernoulli_log_likelihood(x.double(), model.double().decode_logits(z.double())[None])[0]
        model.float()
        ms = median_ms({name: lambda loop=loop, z=z: decode(loop, model.decoder, x, z)
                        for name, loop in kernels.items()}, args.repeats)
        for name, loop in kernels.items():
            error = (decode(loop, model.decoder, x, z).double() - exact).abs().max().item()
            print(f"  {points:>6,} points, {name:<18} {ms[name]:7.1f} ms   largest |error| vs float64 {error:.1e} nats")
    block_parts(model.decoder, decoding.BLOCK_ROWS, 4 * args.repeats)


if __name__ == "__main__":
    main()
