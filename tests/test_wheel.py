"""A user's install: the sdist and the wheel built from this checkout with ``python -m build``,
the wheel installed into a fresh virtualenv, and ssdq run from an empty folder.

It proves what the editable install used by the rest of the suite cannot: the package carries
its weights (``ssdq reproduce`` and ``ssdq prune`` find them in site-packages), the archives
carry nothing else, and a run writes only into the folder it runs in (the installed package and
the checkout stay as they were, the temp folder is left empty). And that the wheel asks only for
the limits it really has: it installs beside other releases of the libraries constraints.txt
pins for the tests. A few minutes, most of them the two installs (pip's cache makes the
dependencies quick after the first one).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from ssdq import __version__

from helpers import REPO

pytestmark = pytest.mark.wheel

WEIGHTS = {"reference-ssd300-vgg16-atrous.params", "reference-ssd300-vgg16-atrous.json",
           "reference-train-log.jsonl", "sparse-ssd300-vgg16-atrous.params",
           "sparse-ssd300-vgg16-atrous.json", "sparse-train-log.jsonl"}
SDIST_TOP = {"PKG-INFO", "pyproject.toml", "setup.cfg", "MANIFEST.in", "README.md",
             "constraints.txt", "ssdq", "ssdq.egg-info"}
TIMEOUT = 900
# Releases other than constraints.txt's pins, for libraries a user's environment is likely to
# hold already. Newer ones would show it best, but tqdm and psutil are pinned at their newest
# releases and matplotlib's newer ones need numpy >= 1.25, which mxnet 1.9.1 cannot take; so
# older ones, and the wheel's metadata is checked to put no upper bound on these three.
OTHER_RELEASES = {"tqdm": "4.66.6", "matplotlib": "3.9.4", "psutil": "6.1.1"}


def _run(cmd, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
    assert proc.returncode == 0, (cmd, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def _source_copy(dest):
    """The checkout's files as git sees them (tracked, and new ones not ignored), so building
    writes no build/ or egg-info into the checkout."""
    listed = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO).stdout
    for rel in filter(None, listed.split("\0")):
        if os.path.isfile(os.path.join(REPO, rel)):  # deleted but not yet committed: skip
            os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, rel), os.path.join(dest, rel))
    return dest


def _tree(root):
    """{path: (size, mtime)} of every file and folder under ``root``."""
    found = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            found[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return found


def _requirements(wheel):
    """{name: version specifier} the wheel's METADATA requires outside any extra."""
    with zipfile.ZipFile(wheel) as whl:
        metadata = whl.read("ssdq-%s.dist-info/METADATA" % __version__).decode()
    found = {}
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist: ") and "extra ==" not in line:
            name, spec = re.match(r"Requires-Dist: ([A-Za-z0-9_.-]+)\s*(.*)", line).groups()
            found[name.lower()] = spec
    return found


def _check_archives(sdist, wheel):
    with tarfile.open(sdist) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name]
    assert {n.split("/")[0] for n in names} == SDIST_TOP, sorted(names)
    assert {os.path.basename(n) for n in names if n.startswith("ssdq/model/weights/")} == WEIGHTS
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    dist_info = "ssdq-%s.dist-info/" % __version__
    assert all(n.startswith(("ssdq/", dist_info)) for n in names), names
    package = [n for n in names if n.startswith("ssdq/")]
    weights = {n for n in package if n.startswith("ssdq/model/weights/")}
    assert {os.path.basename(n) for n in weights} == WEIGHTS
    assert all(n.endswith(".py") for n in set(package) - weights), sorted(set(package) - weights)
    # only the real limits: the exact pins live in constraints.txt
    required = _requirements(wheel)
    assert {name for name, spec in required.items() if "==" in spec} == {"mxnet", "gluoncv"}
    assert required["numpy"] == "<1.24", required
    for name in OTHER_RELEASES:
        assert not any(op in required[name] for op in ("==", "<", "~=", "!=")), required


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The sdist built from a copy of the checkout by ``python -m build`` and the wheel it builds
    from that sdist (as pip builds a downloaded one); checks both and returns the wheel."""
    tmp = tmp_path_factory.mktemp("build")
    src = _source_copy(str(tmp / "src"))
    _run([sys.executable, "-m", "build", "--outdir", str(tmp / "dist"), src])
    sdist, = glob.glob(str(tmp / "dist" / "ssdq-*.tar.gz"))
    wheel, = glob.glob(str(tmp / "dist" / "ssdq-*.whl"))
    _check_archives(sdist, wheel)
    return wheel


def _install(venv, wheel, constraints):
    """A fresh virtualenv at ``venv`` with the wheel installed under ``constraints``; its bin."""
    _run([sys.executable, "-m", "venv", venv])
    bin_dir = os.path.join(venv, "bin")
    _run([os.path.join(bin_dir, "pip"), "install", "-q", "-c", constraints, wheel])
    return bin_dir


def _user_shell(tmp_path, bin_dir):
    """A user's shell: nothing of the checkout on the path, an empty folder to run in, and a home
    and temp folder of its own (what lands there is seen; matplotlib caches its fonts)."""
    work, home, temp = tmp_path / "work", tmp_path / "home", tmp_path / "tmp"
    for folder in (work, home, temp):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(home), TMPDIR=str(temp), PATH=bin_dir + os.pathsep + env["PATH"],
               MXNET_SUBGRAPH_VERBOSE="0")
    return work, home, temp, env


def test_the_wheel_installs_and_runs_the_main_job_from_an_empty_folder(wheel, tmp_path):
    # install into a fresh virtualenv, with the exact pins
    venv = str(tmp_path / "venv")
    bin_dir = _install(venv, wheel, os.path.join(REPO, "constraints.txt"))
    work, home, temp, env = _user_shell(tmp_path, bin_dir)
    checkout_before = _run(["git", "status", "--porcelain", "--ignored"], cwd=REPO).stdout
    venv_before = _tree(venv)

    def ssdq(*args):
        return _run([os.path.join(bin_dir, "ssdq"), *args], cwd=str(work), env=env)

    where = _run([os.path.join(bin_dir, "python"), "-c", "import ssdq; print(ssdq.__file__)"],
                 cwd=str(work), env=env).stdout.strip()
    assert where.startswith(os.path.join(venv, "lib")), where
    assert ssdq("--version").stdout.strip() == "ssdq %s" % __version__
    ssdq("data", "synthetic", "--root", "d", "--train", "64", "--dev", "8", "--val", "32",
         "--quiet")
    proc = ssdq("reproduce", "--data-root", "d", "--num-calib-batches", "1", "--batch-size",
                "16", "--quiet")
    print(proc.stdout[proc.stdout.rfind("|  | fp32"):])  # the table, for the log (pytest -s)
    ssdq("prune", "--recalibrate-images", "0", "--out", "pruned")  # the shipped sparse weights

    report = json.loads((work / "reports" / "report.json").read_text())
    for precision in ("fp32", "int8"):
        assert isinstance(report[precision]["map"], float), precision
    assert report["environment"]["ssdq_version"] == __version__
    bench = json.loads((work / "reports" / "bench.json").read_text())
    assert bench["environment"]["ssdq_version"] == __version__
    # the shipped weights, named by their place in the package (the same on every install)
    meta = json.loads((work / "model" / "converted-meta.json").read_text())
    assert meta["weights"] == "ssdq/model/weights/reference-ssd300-vgg16-atrous.params"
    pruned = json.loads((work / "pruned-meta.json").read_text())
    assert pruned["weights"] == "ssdq/model/weights/sparse-ssd300-vgg16-atrous.params"

    # every output in the folder the commands ran in, and nothing anywhere else
    assert sorted(os.listdir(work)) == ["d", "model", "pruned-0000.params", "pruned-bn.params",
                                        "pruned-meta.json", "pruned-symbol.json", "reports"]
    assert _tree(venv) == venv_before, "the installed package was written to"
    assert _run(["git", "status", "--porcelain", "--ignored"], cwd=REPO).stdout == \
        checkout_before, "the checkout was written to"
    assert not os.listdir(temp), "left in the temp folder: %s" % os.listdir(temp)
    assert set(os.listdir(home)) <= {".cache", ".config"}, os.listdir(home)  # matplotlib's


def test_the_wheel_installs_beside_other_releases_of_tqdm_matplotlib_psutil(wheel, tmp_path):
    pins = open(os.path.join(REPO, "constraints.txt")).read()
    for name, version in OTHER_RELEASES.items():
        pinned = re.search(r"^%s==(\S+)$" % name, pins, re.M).group(1)
        assert pinned != version, "%s %s is the pin now: choose another release" % (name, pinned)
        pins = pins.replace("%s==%s\n" % (name, pinned), "%s==%s\n" % (name, version))
    constraints = tmp_path / "constraints-other.txt"
    constraints.write_text(pins)
    venv = str(tmp_path / "venv")
    bin_dir = _install(venv, wheel, str(constraints))
    work, _, _, env = _user_shell(tmp_path, bin_dir)

    def run(*args):
        return _run([os.path.join(bin_dir, args[0]), *args[1:]], cwd=str(work), env=env)

    installed = json.loads(run("python", "-c", "import json; from importlib import metadata; "
                                "print(json.dumps({n: metadata.version(n) for n in %r}))"
                                % sorted(OTHER_RELEASES)).stdout)
    assert installed == OTHER_RELEASES
    run("pip", "check")
    assert run("ssdq", "--version").stdout.strip() == "ssdq %s" % __version__
    # each of the three at work: tqdm's bars, psutil's pinning and memory, matplotlib's plot
    run("ssdq", "data", "synthetic", "--root", "d", "--train", "8", "--dev", "1", "--val", "8")
    run("ssdq", "convert")
    run("ssdq", "bench", "--model-prefix", "model/converted", "--precisions", "fp32", "--scopes",
        "network", "--batch-sizes", "1", "--warmup", "0", "--repeats", "1", "--data-root", "d",
        "--out", "bench")
    bench = json.loads((work / "bench.json").read_text())
    record, = bench["records"]
    assert record["images_per_sec"] > 0 and record["peak_rss_mb"] > 0
    assert (work / "bench.png").read_bytes()[:4] == b"\x89PNG"
