"""Wall-clock timing shared by the benchmarks."""
import statistics
import time


def median_seconds(fns, rounds):
    """{name: median seconds of fn()} over `rounds` rounds after one warm-up call of each
    (compilation, session set-up). Each round calls every fn once, in turn, so a change in the
    machine's load reaches all of them alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def torch_device():
    """PyTorch's device for the official code: the GPU when PyTorch sees one, else the CPU."""
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_mean_seconds(step, iters, device):
    """Mean seconds of `step()` over `iters` calls after one warm-up call, waiting for the
    GPU's queue before each clock read when `device` is CUDA."""
    import torch
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    return (time.perf_counter() - start) / iters
