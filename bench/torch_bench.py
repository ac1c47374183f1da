#!/usr/bin/python3
"""The cases of graft-bench (bench/suites.cpp), under the same names, with
Debian's PyTorch (python3-torch), for graft-bench to put beside its own.

    /usr/bin/python3 bench/torch_bench.py [--quick] [--threads N] --out FILE.json
Writes {"note": ..., "cases": {name: seconds per call}}. Without torch it
writes a note saying so and no cases. Never a build or test dependency.
"""
import argparse
import json
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--threads", type=int, default=0)
parser.add_argument("--out", required=True)
args = parser.parse_args()


def write(note, cases):
    with open(args.out, "w") as f:
        json.dump({"note": note, "cases": cases}, f, indent=1)


try:
    import torch
    import torch.nn.functional as F
except ImportError:
    write("not installed (Debian package python3-torch); no PyTorch column", {})
    sys.exit(0)

if args.threads > 0:
    torch.set_num_threads(args.threads)
min_time = 0.05 if args.quick else 0.5


def seconds_per_call(fn):
    fn()
    times = []
    for _ in range(3):  # graft-bench reports Google Benchmark's time; take the median of three runs
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time / 3:
                break
        times.append(elapsed / n)
    return sorted(times)[1]


def randn(*shape, seed=1):
    torch.manual_seed(seed)
    return torch.randn(*shape)


def labels(n, classes):
    torch.manual_seed(99)
    return (torch.rand(n) * classes).long().clamp(0, classes - 1)


cases = {}


def case(name, quick, fn):
    if args.quick and not quick:
        return
    cases[name] = seconds_per_call(fn)


a, b = randn(1), randn(1, seed=2)
case("add 1-element", True, lambda: a + b)
for n, quick in ((64, True), (256, True), (1024, False)):
    x, y = randn(n, n), randn(n, n, seed=2)
    case(f"matmul {n}x{n}x{n}", quick, lambda: x @ y)
for batch, cin, cout, hw, quick in ((8, 16, 32, 14, True), (64, 32, 64, 14, True), (64, 64, 128, 28, False)):
    shape = f"{cin}->{cout} {hw}x{hw} b{batch}"
    x, w = randn(batch, cin, hw, hw), randn(cout, cin, 3, 3, seed=2)
    case(f"conv2d forward {shape}", quick, lambda: F.conv2d(x, w, padding=1))
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    case(f"conv2d forward+backward {shape}", quick,
         lambda: torch.autograd.grad(F.conv2d(xg, wg, padding=1).sum(), [xg, wg]))
for n, quick in ((1 << 16, True), (1 << 20, True), (1 << 24, False)):
    x = randn(n)
    case(f"8-op chain {n >> 10}K", quick, lambda: torch.sigmoid(torch.tanh(torch.relu(x * 1.5 + 0.5) * x - 0.25) * 2.0 + x))
for rows, cols, quick in ((256, 256, True), (4096, 1024, True), (16384, 1024, False)):
    x = randn(rows, cols)
    case(f"sum rows {rows}x{cols}", quick, lambda: x.sum(1))
for rows, cols, quick in ((64, 10, True), (256, 1000, True), (4096, 1000, False)):
    x = randn(rows, cols)
    case(f"log_softmax {rows}x{cols}", quick, lambda: F.log_softmax(x, 1))
    xg, y = x.clone().requires_grad_(), labels(rows, cols)
    case(f"cross_entropy forward+backward {rows}x{cols}", quick,
         lambda: torch.autograd.grad(F.cross_entropy(xg, y), [xg]))
for n, quick in ((100000, True), (1000000, True), (10000000, False)):
    for adam in (False, True):
        p = randn(n).requires_grad_()
        p.grad = randn(n, seed=2)
        opt = torch.optim.Adam([p], lr=1e-3) if adam else torch.optim.SGD([p], lr=0.01, momentum=0.9)
        case(f"{'Adam' if adam else 'SGD momentum'} update {n // 1000}K", quick, opt.step)


def training_step(model, adam, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3) if adam else torch.optim.SGD(model.parameters(), lr=0.01,
                                                                                    momentum=0.9)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


nn = torch.nn
for batch in (64, 256):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    case(f"MLP step b{batch}", True, training_step(mlp, False, randn(batch, 784, seed=7), labels(batch, 10)))
torch.manual_seed(0)
cnn = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                    nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
case("CNN step b64", True, training_step(cnn, True, randn(64, 1, 28, 28, seed=7), labels(64, 10)))

# graft-train's GPT at its defaults (bench/torch_gpt.py builds the same model).
sys.path.insert(0, __import__("os").path.dirname(__file__))
from torch_gpt import Gpt, optimizer_for, train_step  # noqa: E402

torch.manual_seed(0)
gpt = Gpt(114, 64, 4, 4, 128)
gpt_opt = optimizer_for(gpt)
torch.manual_seed(7)
ids = (torch.rand(12, 65) * 114).long()
case("GPT step b12", False, lambda: train_step(gpt, gpt_opt, ids[:, :64], ids[:, 1:]))

write(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads", cases)
