"""fnevr_jax.download: checkpoints from a path or an http(s) URL (a local HTTP server here),
downloaded once into the cache, sha256-checked, nothing left behind by a failure."""
import functools
import hashlib
import http.server
import threading

import pytest

from fnevr_jax import download, loader


@pytest.fixture()
def server(data_dir):
    """An HTTP server of tests/data in a thread; `requests` lists the paths it was asked for."""
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(data_dir)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_url_is_downloaded_once_checked_and_loads(server, data_dir, tmp_path):
    url, requests = server
    npz = data_dir / "fomm_seed7.npz"
    digest = _sha256(npz)
    path = download.fetch_checkpoint(f"{url}/fomm_seed7.npz", sha256=digest, cache=tmp_path)
    assert path.parent == tmp_path / "checkpoints" and path.name.endswith("-fomm_seed7.npz")
    assert path.read_bytes() == npz.read_bytes()
    assert requests == ["/fomm_seed7.npz"]
    # The second time: the cache, no request (the sha256 is checked again).
    assert download.fetch_checkpoint(f"{url}/fomm_seed7.npz", sha256=digest.upper(),
                                     cache=tmp_path, progress=False) == path
    assert requests == ["/fomm_seed7.npz"]
    # A damaged cached file is downloaded again.
    path.write_bytes(b"damaged")
    assert download.fetch_checkpoint(f"{url}/fomm_seed7.npz", sha256=digest,
                                     cache=tmp_path, progress=False) == path
    assert len(requests) == 2 and _sha256(path) == digest
    # What the notebook then does with it.
    variables, config, *_ = loader.load(path, "fomm")
    assert config.model == "fomm" and "kp_detector" in variables["params"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [path.name]


def test_failures_are_one_line_and_leave_nothing(server, data_dir, tmp_path):
    url, requests = server
    with pytest.raises(download.DownloadError, match="sha256 .* is not the expected 0{64}"):
        download.fetch_checkpoint(f"{url}/fnevr_seed7.npz", sha256="0" * 64, cache=tmp_path,
                                  progress=False)
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        download.fetch_checkpoint(f"{url}/missing.pth.tar", cache=tmp_path, progress=False)
    with pytest.raises(download.DownloadError, match="64 hex digits"):
        download.fetch_checkpoint(f"{url}/fnevr_seed7.npz", sha256="abc", cache=tmp_path)
    assert list((tmp_path / "checkpoints").iterdir()) == []
    assert requests == ["/fnevr_seed7.npz", "/missing.pth.tar"]
    with pytest.raises(download.DownloadError, match="no such checkpoint"):
        download.fetch_checkpoint(tmp_path / "missing.pth.tar")


def test_a_path_is_used_where_it_is(data_dir):
    """A local path (a mounted Google Drive folder is one) is not copied; an empty sha256
    field means no check."""
    npz = data_dir / "fnevr_seed7.npz"
    assert download.fetch_checkpoint(str(npz), sha256="") == npz
    assert download.fetch_checkpoint(npz, sha256=_sha256(npz)) == npz
    assert download.fetch_checkpoint(data_dir) == data_dir
    with pytest.raises(download.DownloadError, match="is not the expected"):
        download.fetch_checkpoint(npz, sha256="1" * 64)
