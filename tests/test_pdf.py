"""The book as a PDF (``python -m classsel.pdf``), made from the smoke-preset book build and read
back as a reader would: its text (pypdf), its outline, its links and where its words lie."""

import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest

from classsel import pdf as book_pdf

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOTEXT = shutil.which("pdftotext")
#: Every figure of the paper that rests on data (1 and 4 are diagrams).
PAPER_FIGURES = [2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
#: The chapters, numbered in the book's order (_toc.yml).
CHAPTERS = ["What reproduces", "Methods", "Class selectivity rises early", "Selective units matter most early",
            "The early network is close to linear", "Suppressing selectivity early", "Promoting selectivity early",
            "Tampering with selectivity", "Beyond ResNet-50", "Discussion"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make browser installs it)")


def state(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(smoke_book, smoke_store):
    """The PDF of the smoke book, and the run store and execution cache before and after it was made."""
    watched = [smoke_store, smoke_book / "_build" / ".jupyter_cache"]
    before = [state(w) for w in watched]
    with pytest.MonkeyPatch.context() as env:  # the book's own: its execution is keyed on them
        env.setenv("CLASSSEL_PRESET", "smoke")
        env.setenv("CLASSSEL_RUNS", str(smoke_store))
        path = book_pdf.build(ROOT / "book", ROOT / "_config.yml", smoke_book)
    return path, before, [state(w) for w in watched]


@pytest.fixture(scope="module")
def reader(built):
    from pypdf import PdfReader

    return PdfReader(built[0])


@pytest.fixture(scope="module")
def pages(reader):
    """Each page's text, ligatures undone (the book's font joins "fi") and whitespace made single spaces."""
    return [" ".join(unicodedata.normalize("NFKC", p.extract_text()).split()) for p in reader.pages]


@pytest.fixture(scope="module")
def text(pages):
    return " ".join(pages)


def outline(reader) -> list[str]:
    titles, stack = [], [reader.outline]
    while stack:
        for item in stack.pop(0):
            (stack.append(item) if isinstance(item, list) else titles.append(" ".join(item.title.split())))
    return titles


def test_pdf_is_made_without_executing_a_notebook(built, smoke_book):
    path, before, after = built
    assert path == smoke_book / "_build" / "pdf" / "classsel.pdf" and path.read_bytes()[:5] == b"%PDF-"
    assert before[0], "the smoke build left no run store to watch"
    assert after == before, "making the PDF changed the run store or the execution cache"


def test_title_authors_and_numbered_chapters(reader, pages):
    first = pages[0]
    assert "On the special role of class-selective neurons in early training" in first
    for author in ("Omkar Ranadive", "Nikhil Thakurdesai", "Ari S. Morcos", "Matthew L. Leavitt", "Stéphane Deny"):
        assert author in first, author
    titles = outline(reader)
    numbered = [t for t in titles if re.match(r"\d+\. ", t)]
    for number, chapter in enumerate(CHAPTERS, start=1):
        assert any(t.startswith(f"{number}. {chapter.split()[0]}") for t in numbered), (number, chapter, titles)
    assert "References" in titles


def test_page_count_is_sane(reader):
    # every chapter starts a page, and the smoke book's text and 20-odd figures fill a few dozen pages
    assert len(CHAPTERS) + 1 < len(reader.pages) < 300
    width, height = (float(v) for v in reader.pages[0].mediabox[2:])
    assert (round(width), round(height)) == (595, 842), "not an A4 page"


def test_every_paper_figure_is_named_in_a_caption(text):
    captions = re.findall(r"Book figure \d+\.\d+ (.*?)(?=Book figure \d+\.\d+ |$)", text)
    assert captions, "no numbered figure caption"
    missing = [n for n in PAPER_FIGURES if not any(re.match(rf"Reproduces paper Fig\. {n}\b", c) for c in captions)]
    assert not missing, f"paper figures without a caption: {missing}"
    # each caption carries its computed verdict or the runs it rests on
    assert all("Runs: preset smoke" in c for c in captions if c.startswith("Reproduces paper Fig."))


def words(phrase: str) -> str:
    """A regular expression for ``phrase`` as the PDF's text shows it: a line may break after the
    hyphen of "over-represents"."""
    return " ".join(map(re.escape, phrase.split())).replace(r"\-", r"- ?")


def rows_not_shown_whole(text: str, table) -> list[str]:
    """The rows of the What-reproduces table whose label, claim, verdict or effect is not in ``text``
    whole: a row left out, or a column cut at the page's edge (Chromium leaves out the clipped glyphs)."""
    missing = []
    for _, row in table.iterrows():
        label = (str(int(row["claim_number"])) if row["claim_number"] > 0 else
                 "other architectures" if row["section"] == "07_architectures" else "appendix")
        pattern = (rf"{label} {words(row['claim'])} \(paper Figs?\. [^)]*\) {words(row['verdict'])} "
                   rf".{{1,80}}? {words(row['effect'])}(?= |$)")
        if not re.search(pattern, text):
            missing.append(f"{label}: {row['claim']} / {row['verdict']} / {row['effect']}")
    return missing


def test_the_claims_appear_whole_with_their_verdicts(smoke_store, text):
    import pandas as pd

    table = pd.read_csv(smoke_store / "results" / "00_what_reproduces" / "what_reproduces.csv")
    assert sorted(table.loc[table["claim_number"] > 0, "claim_number"]) == [1, 2, 3, 4, 5, 6]  # 0: appendix
    assert not rows_not_shown_whole(text, table)


def test_no_raw_math_directives_or_code(text, pages):
    # MathJax typesets every $...$ and $$...$$; one "$" stands alone ($CLASSSEL_RUNS)
    assert not re.search(r"\\[A-Za-z]+|\$[^$]{1,80}\$", text), "raw TeX: an equation was not typeset"
    # fences, roles and directives ({glue:figure}, {cite:p}, ```{admonition}) and directive options
    assert not re.search(r"```|:::|\{[a-z][a-z:-]*\}|\s:[a-z-]+:\s", text), "MyST syntax left in the text"
    assert "Show code cell" not in text and "Hide code cell" not in text
    code = set()  # the longer lines of every code cell of the notebooks (jupytext percent format)
    for notebook in (ROOT / "notebooks").glob("0*.py"):
        cells = re.findall(r"^(# %%[^\n]*)\n(.*?)(?=^# %%|\Z)", notebook.read_text(), flags=re.M | re.S)
        for header, source in cells:
            if "[markdown]" not in header:
                code.update(line.strip() for line in source.splitlines()
                            if len(line.strip()) > 25 and not line.lstrip().startswith("#"))
    assert code, "found no code lines to look for"
    shown = [line for line in code if " ".join(line.split()) in text]
    assert not shown, f"code cell source in the PDF: {shown[:5]}"


def test_equations_and_references(pages, text):
    methods = next(i for i, p in enumerate(pages) if re.search(r"\b2\. Methods\b", p))
    # the equations of the methods chapter carry their numbers, (2.1), (2.2), ...
    assert len(set(re.findall(r"\(2\.\d+\)", " ".join(pages[methods:methods + 8])))) >= 5
    references = pages[-4:]
    assert any("Ranadive" in p and "Transactions on Machine Learning Research" in p for p in references)


def test_links_stay_inside_the_pdf_or_go_to_the_web(reader):
    internal, external = 0, []
    for page in reader.pages:
        for annot in page.get("/Annots") or []:
            a = annot.get_object()
            if a.get("/Subtype") != "/Link":
                continue
            uri = (a.get("/A") or {}).get("/URI")
            if uri is None:
                internal += "/Dest" in a or "/A" in a
            else:
                external.append(str(uri))
    assert internal > 20, "the cross-references became no links"
    assert external and all(u.startswith(("http://", "https://", "mailto:")) for u in external), \
        [u for u in external if not u.startswith(("http", "mailto:"))][:5]


@pytest.mark.skipif(PDFTOTEXT is None,
                    reason="needs pdftotext (Debian's poppler-utils, make browser installs it) for the words' positions")
def test_every_word_lies_inside_the_printed_area(built, reader):
    """Nothing scrolls on paper (book/_static/classsel.css): a table or code line too wide for the page
    would run into the right margin, where this finds it, instead of being cut unseen."""
    width = float(reader.pages[0].mediabox[2])
    right_margin = 15 / 25.4 * 72  # book/_static/classsel.css: @page margin, 15 mm
    r = subprocess.run([PDFTOTEXT, "-bbox", str(built[0]), "-"], capture_output=True, text=True, check=True)
    words = re.findall(r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>', r.stdout)
    assert len(words) > 1000
    beyond = [(w, float(x)) for x, w in words if float(x) > width - right_margin + 0.5]
    assert not beyond, f"words in the right margin or past the page's edge: {beyond[:10]}"


def test_what_reproduces_table_fits_a_1280_pixel_window(smoke_book, tmp_path):
    """The HTML side of the same fix: in a 1280-pixel-wide window the table's last column lies inside
    the content column, not past the edge of its scroll container."""
    page = smoke_book / "_build" / "html" / "notebooks" / "00_what_reproduces.html"
    probe = tmp_path / "probe.html"
    probe.write_text(f"""<!doctype html><body style="margin:0">
<iframe id="f" src="{page.as_uri()}" style="width:1280px;height:2000px;border:0"></iframe><pre id="out"></pre>
<script>
document.getElementById("f").onload = () => setTimeout(() => {{
  const d = document.getElementById("f").contentDocument;
  const rows = [...d.querySelectorAll(".cell_output table")].map(t => {{
    const box = t.parentElement.getBoundingClientRect();
    const cut = [...t.querySelectorAll("th, td")].filter(c => c.getBoundingClientRect().right > box.right + 0.5
                                                         || c.scrollWidth > c.clientWidth + 0.5).length;
    return `columns=${{t.rows[0].cells.length}} cut=${{cut}} overflow=${{t.parentElement.scrollWidth - t.parentElement.clientWidth}}`;
  }});
  document.getElementById("out").textContent = "MEASURED " + rows.join(" ; ") + " END";
}}, 2000);
</script></body>""")
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                        "--allow-file-access-from-files", "--window-size=1300,2100", "--virtual-time-budget=15000",
                        "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=300)
    measured = re.search(r"MEASURED (.*?) END", r.stdout)
    assert measured, r.stderr[-2000:]
    tables = measured.group(1).split(" ; ")
    assert any("columns=7" in t for t in tables), tables  # the What-reproduces table was measured
    assert all(t.endswith("cut=0 overflow=0") for t in tables), tables


def test_refuses_to_execute_notebooks_of_a_book_not_built(tmp_path, monkeypatch):
    """A build folder whose Sphinx environment lacks the executed notebooks: the PDF build stops
    before reading (so executing) any of them, and says to build the book first."""
    monkeypatch.setenv("CLASSSEL_PRESET", "smoke")  # were the guard to fail, a smoke run, not the default's
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "runs"))
    with pytest.raises(book_pdf.PdfError, match="no built book"):
        book_pdf.build(ROOT / "book", ROOT / "_config.yml", tmp_path)
    (tmp_path / "_build" / ".doctrees").mkdir(parents=True)
    with pytest.raises(book_pdf.PdfError, match=r"refusing to execute .*notebooks/01_emergence.*run `make book`"):
        book_pdf.build(ROOT / "book", ROOT / "_config.yml", tmp_path)
    assert not list((tmp_path / "runs").glob("*/seed*")), "a run was trained"
    assert not (tmp_path / "_build" / "pdf" / "classsel.pdf").exists()
    assert not list((tmp_path / "_build").glob(".jupyter_cache/executed/*"))


def test_names_a_missing_chromium(monkeypatch, tmp_path):
    with pytest.raises(book_pdf.PdfError, match="no-such-chromium"):
        book_pdf.chromium(str(tmp_path / "no-such-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CHROMIUM", raising=False)
    with pytest.raises(book_pdf.PdfError, match="make browser"):
        book_pdf.chromium()


def test_the_first_page_links_to_the_pdf(smoke_book):
    intro = (smoke_book / "_build" / "html" / "intro.html").read_text()
    assert re.search(r'<a [^>]*href="https://[^"]+/classsel\.pdf"', intro), "book/intro.md names no PDF"
