import json
import os

import pytest

from ssdq import __version__
from ssdq.fileio import atomic_dir, atomic_path, write_artifacts, write_json


def test_interrupted_write_leaves_no_file_under_final_name(tmp_path):
    final = tmp_path / "report.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(str(final)) as tmp:
            open(tmp, "w").write('{"half": ')
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_existing_file_survives_a_failed_rewrite(tmp_path):
    final = tmp_path / "report.json"
    write_json(str(final), {"ok": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(str(final)) as tmp:
            open(tmp, "w").write("garbage")
            raise RuntimeError
    assert final.read_text().strip().startswith("{") and '"ok": 1' in final.read_text()
    assert os.listdir(tmp_path) == ["report.json"]
    assert oct(final.stat().st_mode & 0o777) != oct(0o600)


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "split"
    with atomic_dir(str(target)) as tmp:
        open(os.path.join(tmp, "a"), "w").write("1")
    with pytest.raises(ValueError):
        with atomic_dir(str(target)) as tmp:
            open(os.path.join(tmp, "b"), "w").write("2")
            raise ValueError
    assert os.listdir(target) == ["a"] and os.listdir(tmp_path) == ["split"]


def test_every_result_json_names_the_ssdq_version_that_wrote_it(tmp_path):
    """Studies, sensitivity and tune JSONs gain ``ssdq_version``; one that carries it (a report
    at its top level, a bench in its environment record) is written as it is."""
    for name, data, where in (("study", {"rows": []}, ()),
                              ("report", {"ssdq_version": "0.1"}, ()),
                              ("bench", {"environment": {"ssdq_version": "0.1"}}, ("environment",))):
        write_artifacts(str(tmp_path / name), data, "text")
        written = json.load(open(tmp_path / (name + ".json")))
        for key in where:
            written = written[key]
        assert written["ssdq_version"] == (__version__ if name == "study" else "0.1")
    assert "ssdq_version" not in json.load(open(tmp_path / "bench.json"))
