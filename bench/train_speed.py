"""PyTorch side of bench/train-speed.ts: epochs of plain SGD on the same data and the same
architectures (FedAvg paper 2NN and CNN; the penguins task's MLP; the spam task's one-block
Transformer), samples/s of each timed epoch printed as one JSON object.

    /usr/bin/python3 bench/train_speed.py --data FILE --count N --model fedavg-cnn \
        --batch 10 --threads 1 --epochs 1 [--features 784] [--passes 1]

FILE holds N*F little-endian float32 features (F = --features: 784 pixels in [0, 1], the
penguins task's 9 standardised and one-hot features, or the spam task's token ids, integers
stored as floats) followed by N uint8 labels, written by bench/train-speed.ts, so no download
is needed here. A timed epoch is --passes passes over the N examples (the penguins' training
split is 266 rows: one pass is too short to time).

Fair to PyTorch: every thread pool it uses is held to --threads (OpenBLAS's to --blas-threads
where given). torch.set_num_threads sets
ATen's intra-op pool (OpenMP), but not the pool of Debian's pthreads OpenBLAS, which runs the
dense layers' products; so the OpenBLAS/OpenMP variables are set before numpy and torch load,
and threadpoolctl (python3-threadpoolctl), where installed, sets and reports every BLAS pool
it finds. The loop is the one PyTorch users write (optimizer.zero_grad(set_to_none=True),
loss.backward(), optimizer.step()) with no host sync per step: the epoch's loss is summed
as a tensor and read once at the end.

That 1 thread really is 1 is measured, not assumed: each timed epoch reports the process's CPU
time over its wall time, and how many of the process's threads (/proc/self/task) used more
than a tenth of the epoch's wall time; the bench prints both beside the samples/s.
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
    parser.add_argument(
        "--blas-threads", type=int, default=None,
        help="OpenBLAS's pool (default --threads); 1 gives ATen's pool the cores, as Tessera's"
        " native loop does (its dense products on one OpenBLAS thread, its threads to oneDNN)",
    )
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs, after a warm-up")
    parser.add_argument("--features", type=int, default=784, help="floats per example")
    parser.add_argument("--passes", type=int, default=1, help="passes over the data per timed epoch")
    # The spam task's sizes (packages/tasks' built-in spam task: 4,000 words + padding and
    # unknown, 96 tokens, width 32, 2 heads, feed-forward 64).
    parser.add_argument("--vocabulary", type=int, default=4002, help="token ids (spam)")
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--feed-forward", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--epsilon", type=float, default=1e-3, help="LayerNorm epsilon")
    return parser.parse_args()


args = parse_args()
blas_threads = args.threads if args.blas_threads is None else args.blas_threads
# Before numpy/torch are imported: OpenBLAS and OpenMP size their pools when they load.
os.environ["OMP_NUM_THREADS"] = str(args.threads)
for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(blas_threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

try:
    from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402
except ImportError:  # the bench says so in its output
    threadpool_info = None
    threadpool_limits = None


class TransformerBlock(nn.Module):
    """@tessera/ml's TransformerBlock (packages/ml/src/transformer-layers.ts) in PyTorch: x1 =
    LayerNorm(x + Dropout(Attention(x))), out = LayerNorm(x1 + Dropout(FeedForward(x1))),
    FeedForward = Linear(embed, feed_forward), ReLU, Linear(feed_forward, embed); LayerNorm
    epsilon 1e-3, dropout only where Tessera's block has it (nn.TransformerEncoderLayer also
    drops out inside the attention weights and after the ReLU, so it is not used here).
    nn.MultiheadAttention holds the same weights as Tessera's query, key, value and output
    projections (kernels and biases).
    """

    def __init__(self, embed: int, heads: int, feed_forward: int, dropout: float, epsilon: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(embed, heads, dropout=0.0, batch_first=True)
        self.attention_dropout = nn.Dropout(dropout)
        self.attention_norm = nn.LayerNorm(embed, eps=epsilon)
        self.feed_forward = nn.Sequential(
            nn.Linear(embed, feed_forward), nn.ReLU(), nn.Linear(feed_forward, embed),
        )
        self.feed_forward_dropout = nn.Dropout(dropout)
        self.feed_forward_norm = nn.LayerNorm(embed, eps=epsilon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(x, x, x, need_weights=False)
        x = self.attention_norm(x + self.attention_dropout(attended))
        return self.feed_forward_norm(x + self.feed_forward_dropout(self.feed_forward(x)))


class SpamTransformer(nn.Module):
    """The spam task's model: token + position embedding, one TransformerBlock (above), mean
    over the positions, one logit (the task's sigmoid unit, folded into the loss)."""

    def __init__(self, vocabulary: int, length: int, embed: int, heads: int, feed_forward: int):
        super().__init__()
        self.tokens = nn.Embedding(vocabulary, embed)
        self.positions = nn.Parameter(torch.empty(length, embed).uniform_(-0.05, 0.05))
        self.block = TransformerBlock(embed, heads, feed_forward, args.dropout, args.epsilon)
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
    if name == "penguins":
        # The penguins task: 9 features -> Dense(16, relu) -> Dense(3, softmax).
        return nn.Sequential(nn.Linear(args.features, 16), nn.ReLU(), nn.Linear(16, 3))
    if name == "spam":
        return SpamTransformer(args.vocabulary, args.features, args.embed, args.heads, args.feed_forward)
    raise SystemExit(f"unknown model {name}")


def thread_cpu_ticks() -> dict:
    """CPU clock ticks (user + system) of each of this process's threads, by thread id."""
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                # Fields after the ')' that ends the name: utime and stime are the 12th and 13th.
                fields = stat.read().rsplit(")", 1)[1].split()
            ticks[tid] = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return ticks


def busy(before: dict, after: dict, wall: float) -> int:
    """Threads that ran more than a tenth of the wall time between the two readings."""
    per_second = os.sysconf("SC_CLK_TCK")
    return sum(1 for tid, ticks in after.items() if (ticks - before.get(tid, 0)) / per_second > wall / 10)


def main() -> None:
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if threadpool_limits is not None:
        threadpool_limits(limits={"openmp": args.threads, "blas": blas_threads})
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
    elif args.model == "penguins":
        x = torch.from_numpy(features).reshape(args.count, args.features)
        y = torch.from_numpy(labels)
        loss_fn = nn.CrossEntropyLoss()
    else:
        x = torch.from_numpy(features).reshape(args.count, 1, 28, 28)
        y = torch.from_numpy(labels)
        # Softmax + cross-entropy, as tfjs's softmax layer and categorical cross-entropy.
        loss_fn = nn.CrossEntropyLoss()

    model = build(args.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

    def epoch(limit: int) -> float:
        total = torch.zeros(())
        for _ in range(args.passes):
            order = torch.randperm(args.count)[:limit]
            for start in range(0, limit, args.batch):
                index = order[start : start + args.batch]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[index]), y[index])
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(index)
        return float(total) / (limit * args.passes)

    epoch(min(args.count, 20 * args.batch))  # warm-up, as on the tfjs side
    rates = []
    cpu_per_wall = []
    busy_threads = []
    loss = float("nan")
    for _ in range(args.epochs):
        threads_before = thread_cpu_ticks()
        cpu_started = time.process_time()
        started = time.perf_counter()
        loss = epoch(args.count)
        wall = time.perf_counter() - started
        cpu_per_wall.append((time.process_time() - cpu_started) / wall)
        busy_threads.append(busy(threads_before, thread_cpu_ticks(), wall))
        rates.append(args.count * args.passes / wall)
    pools = (
        [
            {"api": p.get("internal_api"), "threads": p.get("num_threads"), "version": p.get("version"),
             "coretype": p.get("architecture"), "library": p.get("filepath")}
            for p in threadpool_info()
        ]
        if threadpool_info is not None
        else "threadpoolctl not installed: OpenBLAS held by OPENBLAS_NUM_THREADS only"
    )
    print(json.dumps({
        "samplesPerSecond": rates,
        "cpuPerWall": cpu_per_wall,
        "busyThreads": busy_threads,
        "loss": loss,
        "threads": torch.get_num_threads(),
        "pools": pools,
        "torch": torch.__version__,
        "params": sum(parameter.numel() for parameter in model.parameters()),
    }))


if __name__ == "__main__":
    main()
