"""measure() under torch.distributed (2 CPU processes, gloo) equals one process.

23 samples over 2 ranks: DistributedSampler pads rank 1 with a repeat of sample 0,
which measure() must leave out.
"""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from classsel.data import loader
from classsel.models import build
from classsel.selectivity import measure

N, CLASSES = 23, 4


def make():
    torch.manual_seed(0)
    model = build("resnet50_narrow", CLASSES, width=4, in_channels=1).double()
    images = torch.randn(N, 1, 16, 16, dtype=torch.float64)
    labels = torch.arange(N) % CLASSES
    return model, TensorDataset(images, labels)


def worker(rank, world, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, ds = make()
        # whole batches of 5, and the same batches in pieces of at most 2 (the padded sample in the last)
        results = [measure(model, loader(ds, 5, train=False, distributed=True), CLASSES, chunk=chunk)
                   for chunk in (5, 2)]
        if rank == 0:
            torch.save([{"means": result.class_means, "counts": result.prediction_counts,
                         "samples": result.samples, "correct1": result.correct1} for result in results], out_file)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process(tmp_path):
    out = tmp_path / "ranks.pt"
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    model, ds = make()
    single = measure(model, loader(ds, 5, train=False), CLASSES)
    for got in torch.load(out, weights_only=True):
        assert got["samples"] == single.samples == N
        assert got["correct1"] == single.correct1
        assert torch.equal(got["counts"], single.prediction_counts)
        for name, means in single.class_means.items():
            torch.testing.assert_close(got["means"][name], means, rtol=1e-12, atol=1e-14)
