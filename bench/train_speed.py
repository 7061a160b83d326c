"""PyTorch side of bench/train-speed.ts: one epoch of plain SGD on the same data and the
same architectures (FedAvg paper 2NN and CNN), samples/s printed as one JSON object.

    /usr/bin/python3 bench/train_speed.py --data FILE --count N --model fedavg-cnn \
        --batch 10 --threads 1

FILE holds N*784 little-endian float32 pixels in [0, 1] followed by N uint8 labels,
written by bench/train-speed.ts, so no download is needed here.
"""
import argparse
import json
import time

import numpy as np
import torch
from torch import nn


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
    raise SystemExit(f"unknown model {name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    raw = np.fromfile(args.data, dtype=np.uint8)
    pixels = args.count * 784
    x = torch.from_numpy(raw[: pixels * 4].view(np.float32).copy()).reshape(args.count, 1, 28, 28)
    y = torch.from_numpy(raw[pixels * 4 : pixels * 4 + args.count].astype(np.int64))

    model = build(args.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    # Softmax + cross-entropy, as tfjs's softmax layer and categorical cross-entropy.
    loss_fn = nn.CrossEntropyLoss()

    def epoch(limit: int) -> float:
        order = torch.randperm(args.count)[:limit]
        total = 0.0
        for start in range(0, limit, args.batch):
            index = order[start : start + args.batch]
            optimizer.zero_grad()
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        return total / limit

    epoch(min(args.count, 20 * args.batch))  # warm-up, as on the tfjs side
    started = time.perf_counter()
    loss = epoch(args.count)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "samplesPerSecond": args.count / seconds,
        "seconds": seconds,
        "loss": loss,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
