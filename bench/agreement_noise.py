"""What top-1 agreement a given SQNR buys on the zoo's evaluation views (README, "How hard 97 % is").

Gaussian noise at a given SQNR is added to the float logits of each pretrained EfficientNet-Lite
on its 512 evaluation views (20 seeded draws per level) and the agreement of the noisy argmax
with float is averaged: `python -m bench.agreement_noise efficientnet_lite1 efficientnet_lite2`.
"""

from __future__ import annotations

import sys

LEVELS_DB = (15, 20, 25, 28, 30, 33, 36, 40)


def main(names: list[str]) -> None:
    import torch

    from zoo import data, models
    from zoo.registry import entry

    for name in names:
        model = getattr(models, name)().eval()
        x = torch.from_numpy(data.arrays(entry(name).data, "eval", 512)["x"])
        with torch.no_grad():
            ref = torch.cat([model(b) for b in x.split(32)])
        top2 = ref.topk(2, -1).values
        margin = top2[:, 0] - top2[:, 1]
        print(f"{name}: top-1 probability median {float(ref.softmax(-1).max(-1).values.median()):.3f}; top-1 minus top-2 logit "
              f"margin 5th/10th/50th percentile {', '.join(f'{float(margin.quantile(q)):.3f}' for q in (0.05, 0.1, 0.5))}")
        print("| SQNR dB | agreement, first 128 views | agreement, 512 views |\n|---|---|---|")
        generator = torch.Generator().manual_seed(0)
        for db in LEVELS_DB:
            cells = []
            for n in (128, 512):
                r = ref[:n]
                sigma = (r.pow(2).mean() / 10 ** (db / 10)).sqrt()
                hits = [float(((r + sigma * torch.randn(r.shape, generator=generator)).argmax(-1) == r.argmax(-1)).float().mean())
                        for _ in range(20)]
                cells.append(f"{100 * sum(hits) / len(hits):.1f} %")
            print(f"| {db} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["efficientnet_lite1", "efficientnet_lite2"])
