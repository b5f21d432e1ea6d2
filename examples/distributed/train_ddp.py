"""A tiny DDP training loop: a linear model fitted to y = 3x + 1 on random data, every process
on its own GPU, gradients averaged across all nodes by NCCL. Rank 0 prints the loss, the fitted
weights and the world size, so a run shows that every node took part."""

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(rank)
    model = DistributedDataParallel(
        torch.nn.Linear(1, 1).to(device), device_ids=[local] if device.type == "cuda" else None
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(200):
        x = torch.randn(256, 1, device=device)
        loss = torch.nn.functional.mse_loss(model(x), 3 * x + 1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if rank == 0 and step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    total = torch.tensor([1.0], device=device)
    dist.all_reduce(total)
    if rank == 0:
        weight, bias = model.module.weight.item(), model.module.bias.item()
        print(f"world {world} ({int(total.item())} processes): w={weight:.3f} b={bias:.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
