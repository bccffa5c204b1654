"""Checkpoints from where users keep them: a local path (a Google Drive folder mounted in Colab
is one: `/content/drive/MyDrive/...`) or an http(s) URL, downloaded once into a cache.

    path = fetch_checkpoint("https://example.org/vox-cpk.pth.tar", sha256="9f1c...")

A URL is downloaded with a progress bar to a temporary file in the cache folder
(`$FNEVR_JAX_CACHE`, else `~/.cache/fnevr_jax`), its sha256 checked when one is given, and
renamed into place: a later call with the same URL returns the cached file without a request
(re-checking the sha256). Failures raise `DownloadError` (one line) and leave nothing behind.
"""
import hashlib
import os
import pathlib
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

CHUNK = 1 << 20


class DownloadError(ValueError):
    """A checkpoint that cannot be found, downloaded or verified: reported as one line."""


def cache_dir():
    """`$FNEVR_JAX_CACHE`, else `~/.cache/fnevr_jax`."""
    return pathlib.Path(os.environ.get("FNEVR_JAX_CACHE")
                        or pathlib.Path.home() / ".cache" / "fnevr_jax")


def is_url(source):
    return str(source).startswith(("http://", "https://"))


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _check(path, sha256, what):
    if sha256 and (actual := file_sha256(path)) != sha256:
        raise DownloadError(f"{what}: sha256 {actual} is not the expected {sha256}")


def cached_path(url, cache=None):
    """Where `url` is cached: `<cache>/checkpoints/<hash of the URL>-<file name>`."""
    name = pathlib.PurePosixPath(urllib.parse.urlparse(url).path).name or "checkpoint"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    return pathlib.Path(cache or cache_dir()) / "checkpoints" / f"{key}-{name}"


def fetch_checkpoint(source, sha256=None, cache=None, progress=True):
    """A local path to the checkpoint `source`: a path (file or directory) as it is, a URL
    downloaded into `cache` (default `cache_dir()`) unless already there. `sha256` (hex),
    when given, must match the file's; a cached file that no longer matches is downloaded
    again. `progress`: a tqdm bar on stderr."""
    source = str(source).strip()
    if not source:
        raise DownloadError("no checkpoint given (a path, or an http(s) URL)")
    sha256 = (sha256 or "").strip().lower() or None     # a notebook's empty field: no check
    if sha256 and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise DownloadError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if not is_url(source):
        path = pathlib.Path(source).expanduser()
        if not path.exists():
            raise DownloadError(f"{source}: no such checkpoint (a path, or an http(s) URL)")
        if path.is_file():
            _check(path, sha256, source)
        return path
    target = cached_path(source, cache)
    if target.is_file():
        try:
            _check(target, sha256, str(target))
            return target
        except DownloadError:
            target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        _download(source, tmp, progress)
        _check(tmp, sha256, source)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _download(url, out, progress):
    request = urllib.request.Request(url, headers={"User-Agent": "fnevr_jax"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(out, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = None
            if progress:
                from tqdm import tqdm
                bar = tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr,
                           desc=pathlib.Path(urllib.parse.urlparse(url).path).name or url)
            try:
                while block := response.read(CHUNK):
                    f.write(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: download failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"{url}: download failed: {reason}") from None
    if out.stat().st_size == 0:
        raise DownloadError(f"{url}: download failed: the server sent an empty file")
