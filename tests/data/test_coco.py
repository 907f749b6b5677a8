"""download_coco against a local HTTP server serving a tiny COCO-shaped archive set."""
import hashlib
import io
import json
import os
import socket
import threading
import types
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from ssdq.data.coco import Archive, download_coco
from ssdq.errors import SsdqError

VAL_URL = "/zips/val2017.zip"
ANN_URL = "/annotations/annotations_trainval2017.zip"


class _Handler(BaseHTTPRequestHandler):
    """Serves ``state.files``; records (path, Range) of every request; honours Range if asked."""

    state = None  # set per server

    def do_GET(self):
        state = self.state
        rng = self.headers.get("Range")
        state.requests.append((self.path, rng))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and state.honour_range:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(body) - 1, len(body)))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        # cut_at simulates a dropped connection: the promised length is never delivered
        end = len(body) if state.cut_at is None else state.cut_at
        self.wfile.write(body[start:end])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(request):
    state = types.SimpleNamespace(files={}, requests=[], honour_range=True, cut_at=None)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"state": state}))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()

    def stop():
        httpd.shutdown()
        httpd.server_close()
        thread.join()

    request.addfinalizer(stop)
    state.base_url = "http://127.0.0.1:%d" % httpd.server_address[1]
    return state


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # stored: JPEG bytes stay findable
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _archive(url, data, target):
    return Archive(url.lstrip("/"), len(data), hashlib.md5(data).hexdigest(), target)


@pytest.fixture
def coco(tmp_path, server):
    """Three real JPEGs + a minimal instances file, zipped and served; returns a namespace."""
    jpegs = {}
    for i in range(1, 4):
        path = str(tmp_path / ("%012d.jpg" % i))
        img = np.full((24, 32, 3), 60 * i, np.uint8)
        img[4:12, 6:20] = (0, 0, 255)
        assert cv2.imwrite(path, img)
        with open(path, "rb") as f:
            jpegs["val2017/%012d.jpg" % i] = f.read()
    instances = {
        "images": [{"id": i, "file_name": "%012d.jpg" % i, "width": 32, "height": 24}
                   for i in range(1, 4)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [6, 4, 14, 8], "area": 112,
             "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [1, 1, 10, 10], "area": 100,
             "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    val = _zip(jpegs)
    ann = _zip({"annotations/instances_val2017.json": json.dumps(instances),
                "annotations/captions_val2017.json": "{}"})  # must not be extracted
    server.files.update({VAL_URL: val, ANN_URL: ann})
    archives = [_archive(VAL_URL, val, "val2017/"),
                _archive(ANN_URL, ann, "annotations/instances_val2017.json")]
    return types.SimpleNamespace(root=str(tmp_path / "coco"), val=val, ann=ann, jpegs=jpegs,
                                 archives=archives, server=server)


def _run(c, archives=None, base_url=None):
    return download_coco(c.root, base_url=base_url or c.server.base_url,
                         archives=c.archives if archives is None else archives, progress=False,
                         timeout=5)


def _assert_complete(c):
    root = c.root
    assert sorted(os.listdir(root)) == ["annotations", "downloads", "val2017"]  # no temp dirs
    assert os.listdir(os.path.join(root, "annotations")) == ["instances_val2017.json"]
    with open(os.path.join(root, "annotations", "instances_val2017.json")) as f:
        assert len(json.load(f)["images"]) == 3
    for name, data in c.jpegs.items():
        with open(os.path.join(root, name), "rb") as f:
            assert f.read() == data
        assert cv2.imread(os.path.join(root, name)).shape == (24, 32, 3)
    assert sorted(os.listdir(os.path.join(root, "downloads"))) == [
        "annotations_trainval2017.zip", "val2017.zip"]  # no .part left
    with open(os.path.join(root, "downloads", "val2017.zip"), "rb") as f:
        assert f.read() == c.val


def _assert_nothing_unpacked(c):
    assert not os.path.exists(os.path.join(c.root, "val2017"))
    assert [n for n in os.listdir(c.root) if n not in ("downloads", "annotations")] == []


def _write_part(c, data):
    os.makedirs(os.path.join(c.root, "downloads"))
    with open(os.path.join(c.root, "downloads", "val2017.zip.part"), "wb") as f:
        f.write(data)


def test_happy_path_gives_coco_layout(coco):
    assert _run(coco) == coco.root
    _assert_complete(coco)
    assert [r for r in coco.server.requests if r[1]] == []  # nothing to resume: no Range sent


def test_resumes_partial_download_with_range(coco):
    k = len(coco.val) // 3
    _write_part(coco, coco.val[:k])
    _run(coco)
    assert (VAL_URL, "bytes=%d-" % k) in coco.server.requests
    _assert_complete(coco)


def test_server_ignoring_range_restarts_download(coco):
    coco.server.honour_range = False
    k = len(coco.val) // 3
    _write_part(coco, coco.val[:k])  # appending a full 200 body to this would be corrupt
    _run(coco)
    assert (VAL_URL, "bytes=%d-" % k) in coco.server.requests
    _assert_complete(coco)


def test_dropped_connection_keeps_part_and_rerun_resumes(coco):
    coco.server.cut_at = len(coco.val) // 2
    with pytest.raises(SsdqError, match="rerun resumes") as exc:
        _run(coco)
    assert coco.server.base_url + VAL_URL in str(exc.value)
    part = os.path.join(coco.root, "downloads", "val2017.zip.part")
    assert os.path.getsize(part) == len(coco.val) // 2
    coco.server.cut_at = None
    _run(coco)
    assert (VAL_URL, "bytes=%d-" % (len(coco.val) // 2)) in coco.server.requests
    _assert_complete(coco)


@pytest.mark.parametrize("damage", ["flipped_byte", "extra_bytes"])
def test_corrupt_download_is_refused_and_deleted(coco, damage):
    bad = bytearray(coco.val)
    if damage == "flipped_byte":
        bad[len(bad) // 2] ^= 0xFF
    else:
        bad += b"junk"
    coco.server.files[VAL_URL] = bytes(bad)
    with pytest.raises(SsdqError, match="corrupt") as exc:
        _run(coco)
    assert "val2017.zip" in str(exc.value) and coco.archives[0].md5 in str(exc.value)
    assert "\n" not in str(exc.value)
    assert os.listdir(os.path.join(coco.root, "downloads")) == []  # neither final nor .part
    _assert_nothing_unpacked(coco)


@pytest.mark.parametrize("damage", ["truncated", "bad_crc"])
def test_bad_zip_with_matching_md5_is_refused(coco, damage):
    if damage == "truncated":
        bad = coco.val[: len(coco.val) // 2]  # loses the central directory
    else:
        jpeg = coco.jpegs["val2017/000000000002.jpg"]
        bad = bytearray(coco.val)
        bad[coco.val.index(jpeg) + len(jpeg) // 2] ^= 0xFF
        bad = bytes(bad)
    coco.server.files[VAL_URL] = bad
    archives = [_archive(VAL_URL, bad, "val2017/"), coco.archives[1]]
    with pytest.raises(SsdqError, match="not a valid zip") as exc:
        _run(coco, archives)
    assert "val2017.zip" in str(exc.value)
    _assert_nothing_unpacked(coco)


def test_http_404_names_the_url(coco):
    del coco.server.files[VAL_URL]
    with pytest.raises(SsdqError, match="HTTP 404") as exc:
        _run(coco)
    assert coco.server.base_url + VAL_URL in str(exc.value)
    assert "rerun resumes" in str(exc.value)


def test_unreachable_server_names_the_url(coco):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SsdqError, match="download of http://127.0.0.1:%d/zips/val2017.zip" % port):
        _run(coco, base_url="http://127.0.0.1:%d" % port)


def test_rerun_with_everything_present_makes_no_request(coco):
    _run(coco)
    coco.server.requests.clear()
    assert _run(coco) == coco.root
    assert coco.server.requests == []
    # an image gone but verified archives kept: unpacked again without downloading
    os.remove(os.path.join(coco.root, "val2017", "000000000003.jpg"))
    _run(coco)
    assert coco.server.requests == []
    _assert_complete(coco)
    # a complete dataset is left alone even once its archives are deleted
    for name in os.listdir(os.path.join(coco.root, "downloads")):
        os.remove(os.path.join(coco.root, "downloads", name))
    assert _run(coco) == coco.root
    assert coco.server.requests == []


@pytest.mark.parametrize("member", ["val2017/../../evil.jpg", "/tmp/evil.jpg", "../evil.jpg"])
def test_zip_slip_member_is_refused(coco, tmp_path, member):
    bad = _zip({"val2017/000000000001.jpg": coco.jpegs["val2017/000000000001.jpg"],
                member: b"evil"})
    coco.server.files[VAL_URL] = bad
    archives = [_archive(VAL_URL, bad, "val2017/"), coco.archives[1]]
    with pytest.raises(SsdqError, match="unsafe member path"):
        _run(coco, archives)
    assert not (tmp_path / "evil.jpg").exists()
    _assert_nothing_unpacked(coco)
