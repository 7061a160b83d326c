"""PyTorch side of bench/train-speed.ts: epochs of plain SGD on the same data and the same
architectures (FedAvg paper 2NN and CNN; the spam task's one-block Transformer), samples/s of
each timed epoch printed as one JSON object.

    /usr/bin/python3 bench/train_speed.py --data FILE --count N --model fedavg-cnn \
        --batch 10 --threads 1 --epochs 1 [--features 784]

FILE holds N*F little-endian float32 features (F = --features: 784 pixels in [0, 1], or the
spam task's token ids, integers stored as floats) followed by N uint8 labels, written by
bench/train-speed.ts, so no download is needed here.

Fair to PyTorch: every thread pool it uses is held to --threads. torch.set_num_threads sets
ATen's intra-op pool (OpenMP), but not the pool of Debian's pthreads OpenBLAS, which runs the
dense layers' products; so the OpenBLAS/OpenMP variables are set before numpy and torch load,
and threadpoolctl (python3-threadpoolctl), where installed, sets and reports every BLAS pool
it finds. The loop is the one PyTorch users write (optimizer.zero_grad(set_to_none=True),
loss.backward(), optimizer.step()) with no host sync per step: the epoch's loss is summed
as a tensor and read once at the end.
"""
import argparse
import json
import os
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs, after a warm-up")
    parser.add_argument("--features", type=int, default=784, help="floats per example")
    # The spam task's sizes (packages/tasks' built-in spam task: 4,000 words + padding and
    # unknown, 96 tokens, width 32, 2 heads, feed-forward 64).
    parser.add_argument("--vocabulary", type=int, default=4002, help="token ids (spam)")
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--feed-forward", type=int, default=64)
    return parser.parse_args()


args = parse_args()
# Before numpy/torch are imported: OpenBLAS and OpenMP size their pools when they load.
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

try:
    from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402
except ImportError:  # the bench says so in its output
    threadpool_info = None
    threadpool_limits = None


class SpamTransformer(nn.Module):
    """The spam task's model: token + position embedding, one post-norm Transformer encoder
    block (self-attention, residual, LayerNorm, ReLU feed-forward, residual, LayerNorm; the
    same shapes and FLOPs as @tessera/ml's TransformerBlock, epsilon 1e-3), mean over the
    positions, one logit. PyTorch's block also drops out inside the attention weights and
    after the feed-forward's ReLU (dropout 0.1): no FLOPs of note, so left as PyTorch has it.
    """

    def __init__(self, vocabulary: int, length: int, embed: int, heads: int, feed_forward: int):
        super().__init__()
        self.tokens = nn.Embedding(vocabulary, embed)
        self.positions = nn.Parameter(torch.empty(length, embed).uniform_(-0.05, 0.05))
        self.block = nn.TransformerEncoderLayer(
            embed, heads, feed_forward, dropout=0.1, activation="relu",
            layer_norm_eps=1e-3, batch_first=True, norm_first=False,
        )
        self.out = nn.Linear(embed, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions
        return self.out(self.block(x).mean(dim=1)).squeeze(1)


def build(name: str) -> nn.Module:
    if name == "fedavg-2nn":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 200), nn.ReLU(),
            nn.Linear(200, 200), nn.ReLU(),
            nn.Linear(200, 10),
        )
    if name == "fedavg-cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Linear(3136, 512), nn.ReLU(),
            nn.Linear(512, 10),
        )
    if name == "spam":
        return SpamTransformer(args.vocabulary, args.features, args.embed, args.heads, args.feed_forward)
    raise SystemExit(f"unknown model {name}")


def main() -> None:
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if threadpool_limits is not None:
        threadpool_limits(limits=args.threads)
    torch.manual_seed(1)
    raw = np.fromfile(args.data, dtype=np.uint8)
    floats = args.count * args.features
    features = raw[: floats * 4].view(np.float32).copy()
    labels = raw[floats * 4 : floats * 4 + args.count].astype(np.int64)
    if args.model == "spam":
        x = torch.from_numpy(features.astype(np.int64)).reshape(args.count, args.features)
        y = torch.from_numpy(labels.astype(np.float32))
        # Sigmoid + binary cross-entropy, as the task's sigmoid unit and loss.
        loss_fn = nn.BCEWithLogitsLoss()
    else:
        x = torch.from_numpy(features).reshape(args.count, 1, 28, 28)
        y = torch.from_numpy(labels)
        # Softmax + cross-entropy, as tfjs's softmax layer and categorical cross-entropy.
        loss_fn = nn.CrossEntropyLoss()

    model = build(args.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

    def epoch(limit: int) -> float:
        order = torch.randperm(args.count)[:limit]
        total = torch.zeros(())
        for start in range(0, limit, args.batch):
            index = order[start : start + args.batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
        return float(total) / limit

    epoch(min(args.count, 20 * args.batch))  # warm-up, as on the tfjs side
    rates = []
    loss = float("nan")
    for _ in range(args.epochs):
        started = time.perf_counter()
        loss = epoch(args.count)
        rates.append(args.count / (time.perf_counter() - started))
    pools = (
        [
            {"api": p.get("internal_api"), "threads": p.get("num_threads"), "version": p.get("version"),
             "coretype": p.get("architecture")}
            for p in threadpool_info()
        ]
        if threadpool_info is not None
        else "threadpoolctl not installed: OpenBLAS held by OPENBLAS_NUM_THREADS only"
    )
    print(json.dumps({
        "samplesPerSecond": rates,
        "loss": loss,
        "threads": torch.get_num_threads(),
        "pools": pools,
        "torch": torch.__version__,
        "params": sum(parameter.numel() for parameter in model.parameters()),
    }))


if __name__ == "__main__":
    main()
