#!/usr/bin/python3
"""bench_onednn's CNN cases run with PyTorch (Debian's python3-torch): the
graft-train CNN Adam step at batch 64 and one CNN epoch over Fashion-MNIST,
with as many threads as graft uses. (The MLP steps are graft-bench's, whose
PyTorch side is bench/torch_bench.py.)

    /usr/bin/python3 bench/torch_cnn.py [threads]
Never a build or test dependency; says so and exits when torch is missing.
"""
import gzip
import os
import sys
import time

try:
    import torch
except ImportError:
    print("PyTorch is not installed (Debian package python3-torch); nothing to compare")
    sys.exit(0)

threads = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
torch.set_num_threads(threads)
print(f"PyTorch {torch.__version__}, {threads} threads")


def per_call(fn, min_time=1.0):
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def cnn():
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def train_steps(model, opt, batches):
    for x, y in batches:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


torch.manual_seed(0)
model = cnn()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.randn(64, 1, 28, 28), (torch.rand(64) * 10).long()
print(f"CNN Adam step, batch 64:       {per_call(lambda: train_steps(model, opt, [(x, y)])) * 1e3:8.2f} ms")

root = "/usr/share/datasets/fashion-mnist"
try:
    images = read_idx(f"{root}/train-images-idx3-ubyte.gz").float().div(255).sub(0.2860).div(0.3530)
    labels = read_idx(f"{root}/train-labels-idx1-ubyte.gz").long()
except OSError as e:
    print(f"CNN epoch: Fashion-MNIST not found ({e})")
    sys.exit(0)
images = images.unsqueeze(1)
order = torch.randperm(len(labels))
batches = [(images[order[i:i + 64]], labels[order[i:i + 64]]) for i in range(0, len(labels), 64)]
torch.manual_seed(0)
model = cnn()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
start = time.perf_counter()
train_steps(model, opt, batches)
print(f"CNN epoch, 60,000 images:      {time.perf_counter() - start:8.2f} s")
