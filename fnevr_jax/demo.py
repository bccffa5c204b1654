"""The web app: animate a photo with a driving video in the browser (Gradio).

    python -m fnevr_jax.demo --checkpoint CKPT [--model fomm] [--host 0.0.0.0] [--share]

Upload a photo and a driving video (or pick an example), choose the options of `animate.py`,
press Animate: a progress bar, then the result video (with the driving audio) to play and
download. The animation is `fnevr_jax.animation.animate`, the call of `animate.py` and the
notebooks. The app listens on 127.0.0.1 unless told otherwise (`--host`; `--share` asks
Gradio for a public link), refuses uploads over `--max-upload-mb`, animates at most
`--max-frames` frames of a driving video (a longer one is cut there, and the page says so),
one request at a time (the others wait in a queue), and keeps
uploads and results in its own temporary folder, removed on exit. Bad input (not an image, a
video without a face with crop on, an upload past the size cap) is a message in the page; the app
keeps serving.
"""
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import uuid

from fnevr_jax import animation, cli, download, media

MAX_UPLOAD_MB = 50     # a 2-core machine animates about 300 frames of 256x256 in a few minutes
MAX_FRAMES = 300


class DemoError(ValueError):
    """Bad input to the app: shown as a message in the page."""


class Demo:
    """The app's state: one animator, its caps and its folder (uploads and results)."""

    def __init__(self, animator, folder, max_upload_mb=MAX_UPLOAD_MB, max_frames=MAX_FRAMES):
        self.animator = animator
        self.folder = pathlib.Path(folder)
        self.max_upload_mb = max_upload_mb
        self.max_frames = max_frames

    def _upload(self, path, what):
        if not path:
            raise DemoError(f"Upload a {what} first.")
        size = pathlib.Path(path).stat().st_size
        if size > self.max_upload_mb * 2**20:
            raise DemoError(f"The {what} is {size / 2**20:.1f} MB; this server takes at most "
                            f"{self.max_upload_mb} MB (--max-upload-mb).")
        return path

    def animate(self, source, driving, mode="relative", crop=False, paste_back=False,
                best_frame="", side_by_side=False, progress=None):
        """(`animation.Result`, a note on the frames cut past `max_frames` or ""); bad input
        raises DemoError or AnimationError (one line)."""
        source = self._upload(source, "photo")
        driving = self._upload(driving, "driving video")
        video = animation.open_video(driving)
        cut = bool(video.count and video.count > self.max_frames)
        options = animation.Options(mode=mode, crop=bool(crop), paste_back=bool(paste_back),
                                     best_frame=str(best_frame).strip() or None,
                                     side_by_side=bool(side_by_side),
                                     max_frames=self.max_frames)
        out = self.folder / "results" / f"result-{uuid.uuid4().hex[:8]}.mp4"
        out.parent.mkdir(parents=True, exist_ok=True)
        result = animation.animate(self.animator, source, out, driving=driving,
                                   options=options, progress=progress)
        note = (f" (the first {result.frames} of {video.count} frames: this server animates at "
                f"most {self.max_frames}, --max-frames)" if cut else "")
        return result, note


def build(app, examples=()):
    """The Gradio page of `app` (a `Demo`); `examples`: [photo, video] pairs to pick."""
    import gradio as gr

    def run(source, driving, mode, crop, paste_back, best_frame, side_by_side,
            progress=gr.Progress()):
        def report(done, total):
            progress((done, total) if total else done, desc="animating", unit="frames")
        try:
            result = app.animate(source, driving, mode, crop, paste_back, best_frame,
                                 side_by_side, progress=report)
        except (DemoError, animation.AnimationError, media.MediaError) as e:
            raise gr.Error(str(e).splitlines()[0], print_exception=False) from None
        result, note = result
        return str(result.path), result.summary().split(": ", 1)[1] + note

    with gr.Blocks(title="fnevr_jax: animate a photo") as page:
        # The model's description without the checkpoint's folders (often a temporary path).
        model = app.animator.description.split(" (", 1)
        model[0] = pathlib.PurePath(model[0]).name or model[0]
        gr.Markdown(f"## Animate a photo with a driving video\n{' ('.join(model)}, "
                    f"{app.animator.config.image_size} px. "
                    f"Uploads up to {app.max_upload_mb} MB; the first {app.max_frames} frames "
                    "of a video are animated; one animation at a time.")
        with gr.Row():
            source = gr.Image(type="filepath", label="Photo", elem_id="source")
            driving = gr.Video(label="Driving video", elem_id="driving", sources=["upload"])
            result = gr.Video(label="Result", elem_id="result", interactive=False)
        with gr.Row():
            mode = gr.Radio(["relative", "absolute"], value="relative", label="Motion")
            crop = gr.Checkbox(label="Crop the faces", elem_id="crop")
            paste_back = gr.Checkbox(label="Paste back into the photo (needs crop)")
            best_frame = gr.Textbox(label="Best frame ('auto', a number, or empty)", value="")
            side_by_side = gr.Checkbox(label="Side by side: photo | video | result")
        button = gr.Button("Animate", variant="primary", elem_id="animate")
        status = gr.Textbox(label="Done", interactive=False, elem_id="status")
        if examples:
            gr.Examples([[str(a), str(b)] for a, b in examples], [source, driving])
        button.click(run, [source, driving, mode, crop, paste_back, best_frame, side_by_side],
                     [result, status], concurrency_limit=1)
    page.queue(default_concurrency_limit=1)
    return page


def default_examples():
    from fnevr_jax import notebook
    try:
        return [(notebook.example_source(), notebook.example_driving())]
    except notebook.NotebookError:
        return []


def launch(checkpoint, model=None, host="127.0.0.1", port=None, share=False,
           max_upload_mb=MAX_UPLOAD_MB, max_frames=MAX_FRAMES, batch_size=8, block=True):
    """Loads the checkpoint (a path or URL) and serves the app until interrupted; the
    temporary folder is removed when it stops. `block=False` returns (page, folder) with the
    app running in the background (close it with `page.close()`, then remove the folder)."""
    animator = animation.load(download.fetch_checkpoint(checkpoint), model, batch_size)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="fnevr_jax_demo_"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "uploads")   # Gradio keeps uploads here
    try:
        page = build(Demo(animator, folder, max_upload_mb, max_frames), default_examples())
        print(f"temporary folder: {folder}", flush=True)
        page.launch(server_name=host, server_port=port, share=share, inbrowser=False,
                    max_file_size=f"{max_upload_mb}mb", allowed_paths=[str(folder)],
                    prevent_thread_lock=not block, quiet=False)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if not block:
        return page, folder
    shutil.rmtree(folder, ignore_errors=True)
    return None


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--checkpoint", required=True,
                   help="train.py workdir, orbax dir, official .pth.tar, parity .npz or URL")
    p.add_argument("--model", choices=("fnevr", "fomm"),
                   help="the network of a .pth.tar/.npz (default fnevr); checked for dirs")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, help="port (default: Gradio's, 7860 or the next free)")
    p.add_argument("--share", action="store_true", help="a public gradio.live link")
    p.add_argument("--max-upload-mb", type=int, default=MAX_UPLOAD_MB,
                   help="largest upload in MB (default %(default)s)")
    p.add_argument("--max-frames", type=int, default=MAX_FRAMES,
                   help="frames of a driving video animated; a longer one is cut "
                        "(default %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="frames per network call")
    args = cli.parse(p, argv)
    if args.max_upload_mb < 1 or args.max_frames < 1:
        p.error("--max-upload-mb and --max-frames must be at least 1")
    # SIGTERM stops the app like Ctrl-C: the temporary folder is removed.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        return cli.run(lambda: launch(args.checkpoint, args.model, args.host, args.port,
                                      args.share, args.max_upload_mb, args.max_frames,
                                      args.batch_size),
                       (animation.AnimationError, download.DownloadError))
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
