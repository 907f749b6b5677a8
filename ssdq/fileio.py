"""Reading and writing ssdq's files: a final name only ever holds a complete file.

Everything ssdq produces (checkpoints, reports, datasets) goes through here: the bytes land under
a temporary name in the same directory and are renamed into place, which is atomic on POSIX.
An interrupted run leaves at most a ``*.tmp-*`` file, never a truncated file under a final name.

A result is written as artifacts (``write_artifacts``): ``STEM.json`` (what CI and scripts read),
``STEM.md`` (the same figures for people, tables made by ``markdown_table``) and optionally a
plot ``STEM.png`` (``figure``), the JSON last, so a JSON file always has its Markdown beside it.
Each such JSON names the ssdq version that wrote it (``ssdq_version``, at its top level or in its
``environment`` record).
"""
import contextlib
import datetime
import json
import os
import shutil
import tempfile

from ssdq import __version__
from ssdq.errors import SsdqError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary directory beside ``path``; it replaces ``path`` if the block succeeds."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".tmp-", dir=os.path.dirname(path))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


def write_json(path, obj):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def read_json(path, what="file"):
    """A JSON file's content, or a one-line error naming ``what`` it was meant to be."""
    if not os.path.isfile(path):
        raise SsdqError("%s not found: %s" % (what, path))
    try:
        with open(path) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SsdqError("%s %s is not valid JSON (%s)" % (what, path, exc)) from None
    except OSError as exc:
        raise SsdqError("cannot read %s %s (%s)" % (what, path, exc.strerror)) from None


def utc_now():
    """The current time as the ISO 8601 UTC timestamp every ssdq file records (``created``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def markdown_table(header, rows):
    """A Markdown table: ``header`` a sequence of column titles, ``rows`` sequences of cells
    (already formatted strings; a ``|`` inside a cell is escaped)."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header)] + [line(r) for r in rows])


@contextlib.contextmanager
def figure(path, figsize=(8, 5), ncols=1, **subplots):
    """A matplotlib figure (headless Agg backend) saved atomically as PNG at ``path`` when the
    block ends without error: ``with figure(path) as (fig, ax): ax.plot(...)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=figsize, **subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


def write_artifacts(stem, data, markdown, plot=None, extra=None):
    """Write a result: ``STEM.md`` (``markdown``), ``STEM.png`` if ``plot`` (a function of the
    path) is given, any ``extra`` files ({suffix: text}), and ``STEM.json`` (``data``) last.
    Returns the paths written, JSON first."""
    paths = [stem + ".json", stem + ".md"]
    write_text(stem + ".md", markdown)
    if plot is not None:
        plot(stem + ".png")
        paths.append(stem + ".png")
    for suffix, text in (extra or {}).items():
        write_text(stem + suffix, text)
        paths.append(stem + suffix)
    write_json(stem + ".json", versioned(data))
    return paths


def versioned(data):
    """``data`` with the ssdq version that made it, unless it already names one (at its top
    level, or in its ``environment`` record as reports and benches carry it)."""
    if not isinstance(data, dict) or "ssdq_version" in data or \
            "ssdq_version" in (data.get("environment") or {}):
        return data
    return dict(data, ssdq_version=__version__)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
