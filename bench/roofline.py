"""How close the FedAvg CNN's training is to what one core can compute (issue 15, goal 5).

Usage: python3 bench/roofline.py [bench/results/train-speed.json]

Prints, on one thread of this machine:
- the arithmetic of one CNN training example (forward and backward, counted from the layer
  shapes below: a multiply-add is 2 floating-point operations);
- the single-thread SGEMM rate of the OpenBLAS both sides link (PyTorch's torch.mm on a
  large square product, the best this library does on one core), and PyTorch's own rate on the
  CNN's second convolution, the layer that holds 82% of the arithmetic;
- for each CNN row of a train-speed JSON (same session, same machine), the native loop's and
  PyTorch's GFLOP/s, and what the issue's goal (2x PyTorch) would need, as a share of that
  SGEMM rate and of the fastest single kernel measured (a whole training step, backward
  convolutions and all, cannot run faster than its fastest part).

Threads are held to one the way bench/train_speed.py holds them: the BLAS variables are set
before torch loads, and threadpoolctl applies and reports the limits.
"""

import json
import os
import sys
import time

for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[name] = "1"

import torch  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)


def cnn_training_flops(batch: int) -> float:
    """Floating-point operations of one training example of the FedAvg CNN at `batch`.

    conv 5x5x1->32 (same) on 28x28, max-pool 2, conv 5x5x32->64 (same) on 14x14, max-pool 2,
    dense 3136->512, dense 512->10 (1,663,370 parameters). Forward: each layer's products.
    Backward: the weight gradient of every layer (as many products as its forward) and the
    input gradient of every layer but the first (the images need none). The SGD step reads
    and writes every parameter once per batch (2 operations a parameter, shared by the batch).
    Pooling, ReLU, softmax and the loss are left out: together under 0.5% of the products.
    """
    conv1 = 28 * 28 * 32 * (5 * 5 * 1) * 2
    conv2 = 14 * 14 * 64 * (5 * 5 * 32) * 2
    dense1 = 3136 * 512 * 2
    dense2 = 512 * 10 * 2
    forward = conv1 + conv2 + dense1 + dense2
    weight_gradients = forward
    input_gradients = conv2 + dense1 + dense2
    sgd = 2 * 1_663_370 / batch
    return forward + weight_gradients + input_gradients + sgd


def best_rate(flops: float, run, repeats: int = 7) -> float:
    """GFLOP/s of the fastest of `repeats` timed calls, after two warm-up calls."""
    run()
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def main() -> None:
    with threadpool_limits(limits=1):
        blas = [
            f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')}, {info.get('num_threads')} thread)"
            for info in threadpool_info()
        ]
        n = 2048
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        sgemm = best_rate(2 * n**3, lambda: torch.mm(a, b))

        x = torch.randn(50, 32, 14, 14)
        conv = torch.nn.Conv2d(32, 64, 5, padding=2)
        with torch.no_grad():
            conv2_forward = best_rate(50 * 14 * 14 * 64 * 800 * 2, lambda: conv(x))

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"{cpu}, PyTorch {torch.__version__}, mkldnn {torch.backends.mkldnn.is_available()}; BLAS: {'; '.join(blas)}")
    print(f"one thread: SGEMM {n}x{n} {sgemm:.1f} GFLOP/s; PyTorch conv2 forward (B=50) {conv2_forward:.1f} GFLOP/s")

    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results", "train-speed.json")
    try:
        with open(path, encoding="utf8") as file:
            results = json.load(file)
    except OSError:
        print(f"no train-speed results at {path}: run npm run bench:train-speed first")
        return
    print()
    # The fastest single kernel measured here: no whole training step runs faster than it.
    fastest = max(sgemm, conv2_forward)
    print("| CNN, batch | MFLOP per example | runtime, 1 thread | examples/s | GFLOP/s | share of SGEMM | share of the fastest kernel |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    by_batch: dict[int, dict[str, float]] = {}
    for row in results.get("rows", []):
        if row.get("model") != "fedavg-cnn" or row.get("threads") != 1:
            continue
        label = row["runtime"]
        # The rows name runtimes as the bench's table does ("PyTorch, 1 thread", ...); the native
        # loop's row is the default one, not "Tessera native loop, OpenBLAS dense, ...".
        runtime = (
            "pytorch"
            if label.startswith("PyTorch")
            else "native"
            if label.startswith("Tessera native loop") and "OpenBLAS dense" not in label
            else None
        )
        if runtime is not None:
            by_batch.setdefault(row["batchSize"], {})[runtime] = row["median"]
    for batch, cells in sorted(by_batch.items()):
        flops = cnn_training_flops(batch)
        for runtime in ("pytorch", "native"):
            if runtime not in cells:
                continue
            rate = cells[runtime] * flops / 1e9
            print(f"| B={batch} | {flops / 1e6:.1f} | {runtime} | {cells[runtime]:,.0f} | {rate:.1f} | {rate / sgemm:.0%} | {rate / fastest:.0%} |")
        if "pytorch" in cells:
            goal = 2 * cells["pytorch"] * flops / 1e9
            print(f"| B={batch} | | 2x PyTorch (the goal) | {2 * cells['pytorch']:,.0f} | {goal:.1f} | {goal / sgemm:.0%} | {goal / fastest:.0%} |")

if __name__ == "__main__":
    main()
