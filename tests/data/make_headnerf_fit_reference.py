"""Runs HeadNeRF's own fitting loop on the parity fixture's model (not run by tests).

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 kornia==0.9.0
    git clone https://github.com/CrisHY1995/headnerf /tmp/headnerf  # commit f874574
    PYTHONPATH=/tmp/torchenv/lib/python3.11/site-packages .venv/bin/python \
        tests/data/make_headnerf_fit_reference.py --headnerf /tmp/headnerf

(one interpreter with jax and torch: the venv's, with the torch venv's packages on the path.)
`benchmarks/headnerf.py`'s `torch_fit` runs `FittingSingleImage.perform_fitting`'s loop with
HeadNeRF's network and its `HeadNeRFLossUtils` (VGG16 L1 with the project's VGG16 weights) for
ITERS iterations, NUM_SAMPLES samples per ray, on `parity.headnerf_fit_problem` of
headnerf_seed7.npz (CODE_NOISE, SEED). Writes headnerf_fit_seed7.npz beside this script:
`history` [ITERS] (the data loss before each update), `last` (after the last update),
`offset_<name>` (id, expr, appearance, euler, translation: the fitted offsets) and the settings.
"""
import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
import headnerf as bench  # noqa: E402
from fnevr_jax import cli  # noqa: E402
from fnevr_jax.parity import fixture_state_dict, headnerf_fit_problem  # noqa: E402

ITERS, NUM_SAMPLES, CODE_NOISE, SEED = 20, 16, 0.3, 0


def main():
    parser = cli.ArgumentParser()
    parser.add_argument("--headnerf", required=True, help="a checkout of CrisHY1995/headnerf")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(2)
    data = dict(np.load(HERE / "headnerf_seed7.npz"))
    para = json.loads(str(data["manifest"]))["para"]
    problem = headnerf_fit_problem(data, CODE_NOISE, SEED)
    res = bench.torch_fit(args.headnerf, para, fixture_state_dict(data)[0], problem, ITERS,
                          NUM_SAMPLES)
    print("history", np.array2string(res["history"], precision=5), "last", res["last"])
    np.savez_compressed(HERE / "headnerf_fit_seed7.npz", history=res["history"],
                        last=res["last"], iters=ITERS, num_samples=NUM_SAMPLES,
                        code_noise=CODE_NOISE, seed=SEED,
                        **{f"offset_{k}": v for k, v in res["offsets"].items()})


if __name__ == "__main__":
    main()
