"""Download and unpack COCO val2017 and its annotations into COCO's layout, resumably.

The result is ``ROOT/annotations/instances_val2017.json`` and ``ROOT/val2017/*.jpg``. Archives go
to ``ROOT/downloads/NAME.part`` (resumed with an HTTP Range request on a rerun) and only take
their final name ``ROOT/downloads/NAME`` once size and md5 match. Unpacking goes through a
temporary name, so an interrupted run never leaves a half-filled folder under the final name.
"""
import dataclasses
import hashlib
import http.client
import json
import os
import posixpath
import urllib.error
import urllib.request
import zipfile
import zlib

from tqdm import tqdm

from ssdq.errors import SsdqError
from ssdq.fileio import atomic_dir, atomic_path

ANNOTATION_FILE = "annotations/instances_val2017.json"
IMAGE_DIR = "val2017"
CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Archive:
    path: str  # under the base URL, e.g. "zips/val2017.zip"
    size: int  # bytes
    md5: str
    target: str  # what it unpacks to under ROOT: a folder ("val2017/") or one file


ARCHIVES = [
    Archive("zips/val2017.zip", 815585330, "442b8da7639aecaf257c1dceb8ba8c80", IMAGE_DIR + "/"),
    # The annotations zip also holds train2017's files (~450 MB of JSON we never read), so only
    # the one member we need is extracted.
    Archive("annotations/annotations_trainval2017.zip", 252907541,
            "f4bbac642086de4f52a3fdda2de5fa2c", ANNOTATION_FILE),
]


def download_coco(root, base_url="http://images.cocodataset.org", archives=None, progress=True,
                  timeout=60):
    """Make ``root`` hold COCO val2017 (images + instances annotations); return ``root``."""
    root = os.fspath(root)
    archives = ARCHIVES if archives is None else archives
    if _complete(root):
        return root
    for archive in archives:
        zip_path = _fetch(archive, root, base_url, progress, timeout)
        _unpack(archive, zip_path, root)
    if not _complete(root):
        raise SsdqError("after unpacking, %s does not match %s (image count differs or file "
                        "missing); delete %s and rerun" % (os.path.join(root, IMAGE_DIR),
                                                          os.path.join(root, ANNOTATION_FILE),
                                                          root))
    return root


def _complete(root):
    """True if the annotation file loads and the image folder holds as many files as it lists."""
    ann, images = os.path.join(root, ANNOTATION_FILE), os.path.join(root, IMAGE_DIR)
    if not (os.path.isfile(ann) and os.path.isdir(images)):
        return False
    try:
        with open(ann) as f:
            expected = len(json.load(f)["images"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return expected == sum(1 for entry in os.scandir(images) if entry.is_file())


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(archive, root, base_url, progress, timeout):
    """Return the path of the verified archive, downloading or resuming it as needed."""
    name = posixpath.basename(archive.path)
    final = os.path.join(root, "downloads", name)
    part = final + ".part"
    url = base_url.rstrip("/") + "/" + archive.path
    if os.path.isfile(final):
        if os.path.getsize(final) == archive.size and _md5(final) == archive.md5:
            return final
        os.remove(final)  # damaged after it was verified: fetch it again
    os.makedirs(os.path.dirname(final), exist_ok=True)
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    if have > archive.size:
        os.remove(part)
        have = 0
    if have < archive.size:
        _download(url, part, have, archive.size, name, progress, timeout)
    got = os.path.getsize(part)
    if got < archive.size:
        # http.client returns a short body without error when the connection drops early
        raise SsdqError("download of %s stopped after %d of %d bytes; the partial download is "
                        "kept in %s and a rerun resumes" % (url, got, archive.size, part))
    got_md5 = _md5(part) if got == archive.size else "not computed"
    if got != archive.size or got_md5 != archive.md5:
        os.remove(part)
        raise SsdqError("archive %s is corrupt: expected %d bytes with md5 %s, got %d bytes with "
                        "md5 %s; it was deleted, rerun to download it again"
                        % (name, archive.size, archive.md5, got, got_md5))
    os.replace(part, final)
    return final


def _download(url, part, have, size, name, progress, timeout):
    """Append the rest of ``url`` to ``part`` (restarting if the server ignores Range)."""
    headers = {"Range": "bytes=%d-" % have} if have else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout) as resp:
            if resp.status != 206:
                have = 0  # a plain 200 carries the whole file
            with open(part, "ab" if have else "wb") as f, \
                    tqdm(total=size, initial=have, desc=name, unit="B", unit_scale=True,
                         unit_divisor=1024, disable=not progress) as bar:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # our partial file is longer than the server's: it cannot be resumed
            os.remove(part)
            raise SsdqError("server refused to resume %s (HTTP 416); the partial download was "
                            "deleted, rerun to start over" % url) from None
        raise SsdqError("download of %s failed: HTTP %d %s; any partial download is kept in %s "
                        "and a rerun resumes" % (url, exc.code, exc.reason, part)) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # URLError, socket timeouts and resets are OSErrors; a bad base URL is a ValueError.
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        raise SsdqError("download of %s failed (%s); any partial download is kept in %s and a "
                        "rerun resumes" % (url, reason, part)) from None


def _check_member(name, zip_path):
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise SsdqError("archive %s holds an unsafe member path %r (absolute or containing '..'); "
                        "refusing to unpack it" % (zip_path, name))


def _copy_member(zf, info, dest):
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with zf.open(info) as src, open(dest, "wb") as dst:  # reading to the end checks the CRC
        for chunk in iter(lambda: src.read(CHUNK), b""):
            dst.write(chunk)


def _unpack(archive, zip_path, root):
    """Extract ``archive.target`` from ``zip_path`` into ``root`` through a temporary name."""
    target, is_dir = archive.target.rstrip("/"), archive.target.endswith("/")
    dest = os.path.join(root, target)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            for info in infos:  # check every name, not only the wanted ones: the zip is suspect
                _check_member(info.filename, zip_path)
            wanted = [i for i in infos if i.filename == target
                      or (is_dir and i.filename.startswith(target + "/") and not i.is_dir())]
            if not wanted:
                raise SsdqError("archive %s holds no %s" % (zip_path, archive.target))
            if is_dir:
                with atomic_dir(dest) as tmp:
                    for info in wanted:
                        _copy_member(zf, info, os.path.join(tmp, info.filename[len(target) + 1:]))
            else:
                with atomic_path(dest) as tmp:
                    _copy_member(zf, wanted[0], tmp)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise SsdqError("archive %s is not a valid zip (%s); delete it and rerun to download it "
                        "again" % (zip_path, exc)) from None
