"""DyCE cost against plain CE: forward + backward time on the same logits, (8, 19, 512, 512) by default.

Usage: uv run python bench/loss_cost.py [--shape 8 19 512 512] [--repeats 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from models.losses import CrossEntropyLoss, DyCELoss


def time_loss(loss_fn, logits: torch.Tensor, target: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward + backward."""
    times = []
    for i in range(repeats + 1):
        x = logits.detach().requires_grad_()
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss_fn(x, target).backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i:  # the first is a warm-up
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 19, 512, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    b, c, h, w = args.shape
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(b, c, h, w, generator=g).to(args.device)
    target = torch.randint(0, c, (b, h, w), generator=g)
    target[:, :16] = 255  # some ignored pixels, as in real labels
    target = target.to(args.device)
    ce = time_loss(CrossEntropyLoss(), logits, target, args.repeats)
    dyce = time_loss(DyCELoss(hard_ratio=0.2, omega=0.5), logits, target, args.repeats)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"logits {tuple(args.shape)} on {where}: CE {1000 * ce:.1f} ms, DyCE {1000 * dyce:.1f} ms "
          f"(forward + backward, median of {args.repeats}); DyCE / CE = {dyce / ce:.2f}")


if __name__ == "__main__":
    main()
