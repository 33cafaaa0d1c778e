"""The multi-process path (what torchrun runs on several GPUs), exercised on CPU with gloo: open_clip's
ClipLoss gathers features across ranks and DDP keeps the replicas identical."""
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank, world, port, queue):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from clipmem_lib.models import model_for, tokenizer_for
    from clipmem_lib.scenes import SceneConfig, make_scenes
    from clipmem_lib.train import TrainConfig, train_clip

    data = make_scenes(SceneConfig(n=256, seed=0))
    tok = tokenizer_for("clipmem-tiny", data)
    model = model_for("clipmem-tiny", tok, seed=0)
    hist = train_clip(model, data.images, tok.tokenize_pairs(data), range(256), TrainConfig(epochs=3, batch_size=64),
                      device="cpu", progress=False)
    w = torch.cat([p.detach().flatten() for p in model.parameters()])
    replicas = [torch.zeros_like(w) for _ in range(world)]
    dist.all_gather(replicas, w)
    if rank == 0:
        queue.put((hist[0]["loss"], hist[-1]["loss"], all(torch.equal(replicas[0], r) for r in replicas)))
    dist.barrier()  # no rank tears gloo down while a peer is still mid-collective (CI once saw SIGABRT at exit)
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_two_process_training_keeps_replicas_in_sync():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_worker, args=(2, port, queue), nprocs=2, start_method="spawn")
    first, last, same = queue.get(timeout=5)
    assert same, "DDP replicas diverged: gradients were not synchronised"
    assert last < first
