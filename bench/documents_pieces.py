"""Time the pure document pipeline on a large PDF: extract -> chunk -> embed -> search.

Usage: ``.venv/bin/python bench/documents_pieces.py [--pages 1000] [--embedders auto,hashing] [--repeat 1]``

The PDF is generated once with fpdf2 (pseudo-English from stdlib docstrings, ~500 words a page) and
cached in the temp dir; generation runs in a child process so it does not inflate this process's peak
RSS. A known sentence is planted on one page so the run also checks that search lands on that page.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from example.documents.chunking import chunk_pages, window_for  # noqa: E402
from example.documents.embedders import get_embedder  # noqa: E402
from example.documents.extract import extract  # noqa: E402
from example.documents.search import VectorIndex  # noqa: E402

GENERATOR_VERSION = 1
PLANTED = "The lighthouse keeper counted migrating cranes over the frozen estuary at dawn."
QUERIES = {
    "paraphrase": "birds flying south past a lighthouse on a cold morning",
    "keywords": "lighthouse keeper cranes estuary",
}
STDLIB_SOURCES = ("argparse", "collections/__init__", "json/decoder", "logging/__init__", "pathlib", "typing")
T = TypeVar("T")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vocabulary() -> tuple[list[str], list[int]]:
    """Words with their real frequencies in a few stdlib modules, so the text has a natural Zipf shape."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    counts: Counter[str] = Counter()
    for name in STDLIB_SOURCES:
        path = stdlib / f"{name}.py"
        if path.exists():
            counts.update(w.lower() for w in re.findall(r"[A-Za-z]{2,}", path.read_text(encoding="utf-8")))
    words, weights = zip(*counts.most_common(6000), strict=True)
    return list(words), list(weights)


def planted_page(pages: int) -> int:
    return max(1, (pages * 37) // 100)


def generate_pdf(path: Path, pages: int, seed: int) -> None:
    from fpdf import FPDF

    rng = random.Random(seed)
    words, weights = vocabulary()
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=False)
    started = time.perf_counter()
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("Helvetica", style="B", size=12)
        pdf.cell(0, 8, f"Section {number}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=9)
        paragraphs = []
        for _ in range(rng.randint(4, 6)):
            sentences = []
            for _ in range(rng.randint(4, 7)):
                sentence = " ".join(rng.choices(words, weights, k=rng.randint(8, 20)))
                sentences.append(sentence[0].upper() + sentence[1:] + ".")
            paragraphs.append(" ".join(sentences))
        if number == planted_page(pages):
            paragraphs.insert(len(paragraphs) // 2, PLANTED)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 4.2, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        pdf.set_y(-15)
        pdf.cell(0, 5, f"Page {number} of {pages}", align="C")
        if number % 100 == 0 or number == pages:
            print(f"  generated {number}/{pages} pages ({time.perf_counter() - started:.1f} s)", flush=True)
    tmp = path.with_suffix(".part")
    pdf.output(str(tmp))
    tmp.replace(path)


def ensure_pdf(pages: int, seed: int) -> Path:
    cache = Path(tempfile.gettempdir()) / "documents_bench"
    cache.mkdir(exist_ok=True)
    path = cache / f"p{pages}_s{seed}_g{GENERATOR_VERSION}.pdf"
    if not path.exists():
        print(f"generating {path} with fpdf2 (once; cached afterwards)...", flush=True)
        started = time.perf_counter()
        cmd = [sys.executable, __file__, "--generate", str(path), "--pages", str(pages), "--seed", str(seed)]
        subprocess.run(cmd, check=True)
        print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def timed(fn: Callable[[], T], repeat: int) -> tuple[T, float]:
    """Run ``fn`` ``repeat`` times and return its last result with the median wall time."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    assert result is not None
    return result, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--embedders", default="auto,hashing", help="comma-separated get_embedder() names")
    parser.add_argument("--repeat", type=int, default=1, help="runs per stage; the median is reported")
    parser.add_argument("--pdf", type=Path, help="use this PDF instead of the generated one")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate_pdf(args.generate, args.pages, args.seed)
        return

    names = [n.strip() for n in args.embedders.split(",") if n.strip()]
    print(
        f"documents_pieces: pages={args.pages} seed={args.seed} embedders={names} repeat={args.repeat} "
        f"python={platform.python_version()} cpus={os.cpu_count()} pid={os.getpid()}",
        flush=True,
    )
    pdf_path = args.pdf or ensure_pdf(args.pages, args.seed)
    print(f"pdf: {pdf_path} ({pdf_path.stat().st_size / 1e6:.1f} MB)  rss at start {peak_rss_mb():.0f} MB")

    progress: list[int] = []
    extracted, t_extract = timed(
        lambda: extract(pdf_path, pdf_path.name, on_page=lambda done, _total: progress.append(done)),
        args.repeat,
    )
    words = sum(len(p.split()) for p in extracted.pages)
    print(
        f"extract   {t_extract:7.3f} s  {extracted.page_count} pages ({extracted.page_count / t_extract:.0f}/s), "
        f"{words:,} words, {len(progress) // args.repeat} progress calls  peak rss {peak_rss_mb():.0f} MB"
    )
    if args.pdf is None:
        planted = planted_page(args.pages)
        found = [i + 1 for i, p in enumerate(extracted.pages) if PLANTED in " ".join(p.split())]
        print(f"          planted sentence found on page(s) {found}, expected [{planted}]")

    for name in names:
        started = time.perf_counter()
        embedder = get_embedder(name)
        t_load = time.perf_counter() - started
        max_chars, overlap = window_for(embedder)
        chunks, t_chunk = timed(
            lambda m=max_chars, o=overlap: chunk_pages(extracted.pages, m, o), args.repeat
        )
        texts = [c.text for c in chunks]
        estimate = embedder.estimate_seconds(len(chunks))
        vectors, t_embed = timed(lambda e=embedder, t=texts: e.embed(t), args.repeat)
        index = VectorIndex(list(range(len(chunks))), vectors)
        found_on: dict[str, list[tuple[int, int]]] = {}
        started = time.perf_counter()
        for label, query in QUERIES.items():
            hits = index.search(embedder.embed([query])[0], k=3)
            found_on[label] = [(chunks[int(i)].page_start, chunks[int(i)].page_end) for i, _ in hits]
        t_query = (time.perf_counter() - started) / len(QUERIES)
        print(
            f"{name:>9} -> {embedder.name} ({embedder.version}, dim {embedder.dim}); load {t_load:.3f} s\n"
            f"  chunk   {t_chunk:7.3f} s  {len(chunks)} chunks (window {max_chars}/{overlap}, "
            f"mean {sum(map(len, texts)) / max(1, len(texts)):.0f} chars)\n"
            f"  embed   {t_embed:7.3f} s  {len(chunks) / t_embed:.0f} chunks/s (estimate was {estimate:.1f} s)  "
            f"peak rss {peak_rss_mb():.0f} MB\n"
            f"  query   {t_query * 1000:7.1f} ms  top-3 pages: "
            + "; ".join(f"{label} {pages}" for label, pages in found_on.items())
        )
        total = t_extract + t_load + t_chunk + t_embed
        print(f"  total   {total:7.3f} s  (extract + load + chunk + embed)")
    print(f"peak rss {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
