"""The README and docs/: the README stays short and keeps .ci/run's contract, its results block
is one of docs/results.md's runs, and every relative link (and #anchor) between the pages
resolves."""
import os
import re
import subprocess

from helpers import REPO

README = os.path.join(REPO, "README.md")
DOCS = os.path.join(REPO, "docs")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _pages():
    return [README] + sorted(os.path.join(DOCS, n) for n in os.listdir(DOCS) if n.endswith(".md"))


def _anchors(path):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", open(path).read(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", text, re.M)}


def test_readme_is_short():
    assert len(open(README).read().splitlines()) <= 150


def test_ci_reads_the_test_command_from_the_quick_start():
    script = open(os.path.join(REPO, ".ci", "run")).read()
    awk = re.search(r"cmd=\$\((awk .*)\)$", script, re.M).group(1)
    cmd = subprocess.run(["bash", "-c", awk], cwd=REPO, capture_output=True, text=True).stdout
    assert "pytest" in cmd and cmd.strip().endswith("tests"), cmd


def test_the_readme_results_are_a_run_of_docs_results_md():
    block = re.search(r"<!-- latest-run[^>]*-->\n(.*?)<!-- /latest-run -->",
                      open(README).read(), re.S).group(1)
    assert "|  | fp32 | int8 |" in block
    assert block in open(os.path.join(DOCS, "results.md")).read()


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in _pages():
        text = re.sub(r"```.*?```", "", open(page).read(), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(full):
                broken.append("%s: %s" % (os.path.relpath(page, REPO), target))
            elif anchor and anchor not in _anchors(full):
                broken.append("%s: %s (no such heading)" % (os.path.relpath(page, REPO), target))
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme():
    readme = open(README).read()
    for page in _pages()[1:]:
        assert "docs/%s" % os.path.basename(page) in readme, page
