"""Peak memory of animating a driving video with the tiny FNeVR model (a subprocess of
tests/test_animation.py): `python -m tests.stream_memory VIDEO OUT SHORT LONG` animates the
first SHORT frames of VIDEO, then the first LONG ones, in one process, and prints one JSON line
with the frames each run wrote and the process's peak RSS (bytes) after each."""
import json
import resource
import sys

import jax


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux: KiB


def main(video, out, short, long):
    from fnevr_jax import animation, api
    from fnevr_jax.models import init_variables
    from tests import tiny

    config = tiny.config("unused")
    variables = init_variables(config, jax.random.key(0), with_discriminator=False)
    animator = api.load_animator(variables, config=config, batch_size=8)
    report = {}
    for name, frames in (("short", short), ("long", long)):
        result = animation.animate(animator, "tests/data/source.png", out, driving=video,
                                   options=animation.Options(max_frames=frames),
                                   progress=lambda *_: None)
        report[name] = {"frames": result.frames, "peak_rss": peak_rss(),
                        "frames_per_second": round(result.frames_per_second, 1)}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
