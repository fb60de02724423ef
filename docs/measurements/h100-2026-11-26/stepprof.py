"""Where does a ViT training step's time go on the GPU? Times variants of the trainer's step."""
import sys, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from attnlab.runtime import autocast
from attnlab.vit.augment import mix_batch, normalize, random_crop_flip
from attnlab.vit.model import VisionTransformer
from attnlab.vit.train import param_groups

dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
small = dev.type == "cpu"
N = 2048 if small else 50000
images = torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, device=dev)
labels = torch.randint(0, 10, (N,), device=dev)
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

def make(dim=256, heads=4, depth=7, bs=1024, aug=True, mix=True, clip=True, fused_opt=True, compile_mode=None):
    torch.manual_seed(0)
    model = VisionTransformer(dim=24 if small else dim, depth=1 if small else depth, heads=heads).to(dev).train()
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3, fused=(dev.type == "cuda" and fused_opt))
    fwd = torch.compile(model, mode=compile_mode) if compile_mode else model
    gen = torch.Generator(device=dev).manual_seed(0)
    rng = np.random.default_rng(0)
    bs = 64 if small else bs
    def step(i):
        idx = torch.randint(0, N, (bs,), device=dev, generator=gen)
        x, y = normalize(images[idx]), labels[idx]
        if aug:
            x = random_crop_flip(x, 4, gen)
        with autocast(dev, True):
            if mix:
                x, t = mix_batch(x, y, 10, 0.8, 1.0, rng, 0.1)
                loss = torch.sum(-t * F.log_softmax(fwd(x).float(), -1), -1).mean()
            else:
                loss = F.cross_entropy(fwd(x).float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step, bs

def timeit(name, steps=30, **kw):
    t0 = time.perf_counter()
    step, bs = make(**kw)
    for i in range(5):
        step(i)
    sync(); t1 = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(); dt = (time.perf_counter() - t1) / steps
    print(f"{name:<34} {1000 * dt:7.2f} ms/step {bs / dt:9.0f} img/s  (setup+warm-up {t1 - t0:.1f}s)", flush=True)

timeit("baseline bs1024")
step, bs = make()
for i in range(5):
    step(i)
sync()
from torch.profiler import ProfilerActivity, profile
acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
with profile(activities=acts) as prof:
    for i in range(10):
        step(i)
    sync()
key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
print(prof.key_averages().table(sort_by=key, row_limit=22, max_name_column_width=50), flush=True)
print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=14, max_name_column_width=50), flush=True)
timeit("no augmentation, no mix", aug=False, mix=False)
timeit("no clip", clip=False)
timeit("bs 2048", bs=2048)
timeit("dim 384 heads 6", dim=384, heads=6)
timeit("dim 384 heads 6 bs 2048", dim=384, heads=6, bs=2048)
timeit("compile reduce-overhead", compile_mode="reduce-overhead", steps=30)
