#!/usr/bin/python3
"""graft-train's character-level GPT (tools/train/gpt.h) in PyTorch, with the
same model, initialization, data and recipe, for comparisons and to check
that graft's checkpoints load:

    /usr/bin/python3 bench/torch_gpt.py train [--iters N] [--threads N] [--data FILE_OR_DIR]
        trains as graft-train --model gpt does; prints losses and tokens/s
    /usr/bin/python3 bench/torch_gpt.py step [--threads N]
        the training step's tokens/s at the default configuration
    /usr/bin/python3 bench/torch_gpt.py load CHECKPOINT [--heads N] [--data FILE_OR_DIR]
        loads graft-train's checkpoint (model.* keys, strictly) and prints its validation loss
Never a build or test dependency; says so and exits when torch is missing.
"""
import argparse
import json
import math
import os
import struct
import sys
import time


try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    if __name__ == "__main__":
        print("PyTorch is not installed (Debian package python3-torch); nothing to compare")
        sys.exit(0)
    raise


def corpus_files(path):
    if not path:
        with open("/var/lib/dpkg/info/fortunes.list") as listing:
            names = [line.strip() for line in listing]
        folder = "/usr/share/games/fortunes/"
        files = [n for n in names if n.startswith(folder) and not n.endswith((".dat", ".u8"))
                 and os.path.isfile(n) and not os.path.islink(n)]
    elif os.path.isdir(path):
        files = [os.path.join(path, n) for n in os.listdir(path) if os.path.isfile(os.path.join(path, n))]
    else:
        files = [path]
    return sorted(files)


def load_corpus(path):
    text = b"".join(open(f, "rb").read() for f in corpus_files(path))
    vocab = sorted(set(text))
    index = {b: i for i, b in enumerate(vocab)}
    ids = torch.tensor([index[b] for b in text], dtype=torch.long)
    split = int(0.9 * len(ids))
    return vocab, ids[:split], ids[split:]


class Gpt(nn.Module):
    def __init__(self, vocab, block, layers, heads, embd, dropout=0.0):
        super().__init__()
        self.block = block
        self.wte = nn.Embedding(vocab, embd)
        self.wpe = nn.Embedding(block, embd)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(embd, heads, 4 * embd, dropout, activation="gelu", batch_first=True,
                                       norm_first=True) for _ in range(layers))
        self.ln_f = nn.LayerNorm(embd)
        residual = 0.02 / math.sqrt(2 * layers)
        with torch.no_grad():
            for w in (self.wte.weight, self.wpe.weight):
                nn.init.normal_(w, 0.0, 0.02)
            for b in self.blocks:
                nn.init.normal_(b.self_attn.in_proj_weight, 0.0, 0.02)
                nn.init.normal_(b.self_attn.out_proj.weight, 0.0, residual)
                nn.init.normal_(b.linear1.weight, 0.0, 0.02)
                nn.init.normal_(b.linear2.weight, 0.0, residual)
                for bias in (b.self_attn.in_proj_bias, b.self_attn.out_proj.bias, b.linear1.bias, b.linear2.bias):
                    nn.init.zeros_(bias)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(t))
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)  # the modules' convention: true is masked out
        for b in self.blocks:
            x = b(x, src_mask=mask)
        return F.linear(self.ln_f(x), self.wte.weight)  # the head shares the token embedding


def batch(ids, size, block):
    starts = (torch.rand(size, dtype=torch.float64) * (len(ids) - block - 1)).long()
    offsets = starts[:, None] + torch.arange(block)[None, :]
    return ids[offsets], ids[offsets + 1]


def loss_of(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def mean_loss(model, ids, args):
    model.eval()
    with torch.no_grad():
        total = sum(loss_of(model, *batch(ids, args.batch_size, args.block_size)).item() for _ in range(args.eval_iters))
    model.train()
    return total / args.eval_iters


def optimizer_for(model, lr=1e-3):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=lr,
                             betas=(0.9, 0.99))


def learning_rate(it, iters, lr=1e-3, min_lr=1e-4, warmup=100):
    if it < warmup:
        return lr * (it + 1) / warmup
    progress = min(1.0, (it - warmup) / max(1, iters - warmup))
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def train_step(model, opt, x, y):
    loss = loss_of(model, x, y)
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss


def read_safetensors(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    types = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32, "BOOL": torch.bool}
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=types[entry["dtype"]]).reshape(entry["shape"])
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "step", "load"])
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--data", default="")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--embd", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--eval-interval", type=int, default=500)
    parser.add_argument("--eval-iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    torch.manual_seed(args.seed)
    vocab, train_ids, val_ids = load_corpus(args.data)
    if args.mode == "load":
        saved = read_safetensors(args.checkpoint)
        state = {k[len("model."):]: v for k, v in saved.items() if k.startswith("model.")}
        layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        block, embd = state["wpe.weight"].shape
        model = Gpt(state["wte.weight"].shape[0], block, layers, args.heads, embd)
        model.load_state_dict(state, strict=True)
        args.block_size = block
        print(f"loaded {len(state)} tensors from {args.checkpoint}: validation loss {mean_loss(model, val_ids, args):.4f}")
        return

    model = Gpt(len(vocab), args.block_size, args.layers, args.heads, args.embd)
    opt = optimizer_for(model)
    if args.mode == "step":
        x, y = batch(train_ids, args.batch_size, args.block_size)
        for _ in range(3):
            train_step(model, opt, x, y)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 5:
            train_step(model, opt, x, y)
            n += 1
        seconds = (time.perf_counter() - start) / n
        print(f"GPT step: {seconds * 1e3:.1f} ms, {args.batch_size * args.block_size / seconds:.0f} tokens/s")
        return

    start = time.perf_counter()
    for it in range(args.iters):
        for group in opt.param_groups:
            group["lr"] = learning_rate(it, args.iters)
        loss = train_step(model, opt, *batch(train_ids, args.batch_size, args.block_size))
        if (it + 1) % 100 == 0:
            rate = 100 * args.batch_size * args.block_size / (time.perf_counter() - start)
            print(f"iter {it + 1}  train loss {loss.item():.4f}  {rate:.0f} tokens/s", flush=True)
            start = time.perf_counter()
        if (it + 1) % args.eval_interval == 0 or it + 1 == args.iters:
            print(f"iter {it + 1}  val loss {mean_loss(model, val_ids, args):.4f}", flush=True)
            start = time.perf_counter()


if __name__ == "__main__":
    main()
