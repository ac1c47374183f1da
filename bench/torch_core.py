#!/usr/bin/python3
"""The cases of bench_core run with PyTorch (Debian's python3-torch), one thread.

    /usr/bin/python3 bench/torch_core.py
Prints one line per case; never a build or test dependency.
"""
import sys
import time

try:
    import torch
except ImportError:
    print("PyTorch is not installed (Debian package python3-torch); nothing to compare")
    sys.exit(0)

torch.set_num_threads(1)


def per_call(fn, min_time=0.5):
    """Seconds per call of fn, over at least min_time."""
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


a, b = torch.ones(1), torch.ones(1)
with torch.no_grad():
    print(f"add 1-element, no grad:      {per_call(lambda: a + b) * 1e6:8.2f} us")
ag = torch.ones(1, requires_grad=True)
print(f"add 1-element, recording:    {per_call(lambda: ag + b) * 1e6:8.2f} us")

x = torch.ones(1, requires_grad=True)
s = torch.tensor(1.0001)


def chain():
    y = x
    for _ in range(100):
        y = y * s
    return y


forward = per_call(chain)
both = per_call(lambda: chain().backward())
print(f"forward chain, per op:       {forward / 100 * 1e6:8.2f} us")
print(f"backward chain, per op:      {(both - forward) / 100 * 1e6:8.2f} us")

for batch in (64, 256):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xb, yb = torch.randn(batch, 784), (torch.rand(batch) * 10).long()

    def step():
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()

    print(f"MLP train step, batch {batch:3d}:  {per_call(step, 2.0) * 1e3:8.2f} ms")
