"""QAT under DistributedDataParallel: 2 gloo processes train what one process trains on the whole batch."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from test_qat import W4A4, tiny, tiny_data

from qconvert import qat
from qconvert.recipe import recipe_from_text

# Spawned gloo ranks hung once in a clean-clone CI run (no progress for minutes); until the cause is
# found this test runs only in `make test-all`, so a hang cannot stall CI.
pytestmark = pytest.mark.slow

# BatchNorm frozen from the start: with batch statistics, two half batches are not one batch.
RECIPE = W4A4 + "qat: {activation_ranges: lsq, weight_ranges: lsq, freeze_bn_after: 0}\n"
STEPS, BATCH, LR = 3, 16, 0.05


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(tiny_data(BATCH, seed=10 + i), (torch.arange(BATCH) + i) % 3) for i in range(STEPS)]


def _train(model: torch.nn.Module, rank: int, world: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    half = BATCH // world
    for x, y in _batches():
        loss = F.cross_entropy(model(x[rank * half : (rank + 1) * half]), y[rank * half : (rank + 1) * half])
        opt.zero_grad()
        loss.backward()
        opt.step()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = qat.prepare(tiny(), recipe_from_text(RECIPE), tiny_data(2))
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        _train(ddp, rank, world)
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_ranks_train_what_one_process_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    single = qat.prepare(tiny(), recipe_from_text(RECIPE), tiny_data(2))
    start = {k: v.detach().clone() for k, v in single.named_parameters()}
    _train(single, 0, 1)
    for key in ranks[0]:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0, msg=key)  # ranks stay in sync
    # gradients averaged over two half batches are the whole batch's: parameters (weights, BatchNorm
    # affine, learned ranges) equal one process's; observed (ema) ranges see each rank's half, as BN would
    for key, value in single.named_parameters():
        torch.testing.assert_close(ranks[0][key], value.detach(), rtol=1e-5, atol=1e-6, msg=key)
    learned = [k for k in start if k.endswith((".amax", ".lo", ".hi"))]
    assert learned and any(not torch.equal(start[k], dict(single.named_parameters())[k]) for k in learned)
