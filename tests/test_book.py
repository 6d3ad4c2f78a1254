"""The book, checked like a reader: built on the smoke preset, opened in headless
Chromium after its scripts ran (MathJax included)."""

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHAPTERS = ["01_emergence", "02_ablation", "03_cka", "04_regularize", "05_promote", "06_class_representation"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make browser installs it)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    env = {**os.environ, "CLASSSEL_PRESET": "smoke", "CLASSSEL_RUNS": str(out / "runs")}
    jb = Path(sys.executable).with_name("jupyter-book")
    # -W: a warning fails the build.
    r = subprocess.run([str(jb), "build", "book", "--path-output", str(out), "-W", "-n", "--keep-going"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    return out / "_build" / "html"


def rendered(path: Path) -> str:
    """The page's DOM after its scripts ran."""
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                        "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids, self.imgs = [], set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))


def parse(html: str) -> Links:
    p = Links()
    p.feed(html)
    return p


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_results_chapter_shows_figures_and_no_errors(site, chapter):
    dom = rendered(site / "notebooks" / f"{chapter}.html")
    page = parse(dom)
    figures = [src for src in page.imgs if "_images/" in src]
    assert figures, f"{chapter} shows no figure"
    for src in figures:
        assert (site / "notebooks" / src).resolve().exists(), src
    assert not re.search(r"(Traceback \(most recent call last\)|[A-Za-z]+Error: )", re.sub(r"<[^>]+>", " ", dom))
    assert 'class="output error' not in dom and "output traceback" not in dom
    assert re.search(r"Fig\. \d+", dom), "figures have no numbered captions"
    assert "Provenance: preset smoke" in re.sub(r"<[^>]+>", "", dom)


def test_equations_render(site):
    dom = rendered(site / "methods.html")
    assert dom.count("<mjx-container") >= 8, "MathJax did not typeset the equations"
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "\\frac" not in text and "\\begin{" not in text, "raw TeX left on the page"


def test_internal_links_resolve(site):
    pages = sorted(site.rglob("*.html"))
    parsed = {p: parse(p.read_text()) for p in pages}
    broken = []
    for page, links in parsed.items():
        for href in links.hrefs:
            url = urlparse(href)
            if url.scheme or href.startswith(("mailto:", "javascript:")):
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.name}: {href}")
            elif url.fragment and target.suffix == ".html" and url.fragment not in parsed.get(
                    target, parse(target.read_text())).ids:
                broken.append(f"{page.name}: {href} (no anchor)")
    assert not broken, broken[:20]


def test_index_and_launch_buttons(site):
    dom = rendered(site / "intro.html")
    assert "Suppressing selectivity early" in dom or "notebooks/04_regularize.html" in dom
    chapter = (site / "notebooks" / "04_regularize.html").read_text()
    assert "mybinder.org" in chapter and "colab.research.google.com" in chapter
    assert "thebe" in chapter.lower()
