"""The static JupyterLite site: how big it is and how long a learner waits for a kernel.

    .venv/bin/python benchmarks/lite_site.py [--site DIR] [--repeats N]

Builds the site (labkit lite build, into artifacts/lite unless --site names a built
one), then reports its size raw and gzipped (what a server that compresses sends),
and, in headless Chromium on a fresh profile each time (an empty browser cache) with
every other host blocked: the time from opening lesson 01 to the kernel being idle,
to its first code cell having run, and to the whole lesson having run (Run All, in
replay). Then the same learner comes back: lesson 01 opened again in a new tab of the
same profile (the site in the browser's and the service worker's caches, the first tab
closed), and the time to its kernel being idle ("second_idle_s").
Results: benchmarks/results/lite-site.json.
"""

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import paths
from labkit.lite import site as lite  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LESSON = "01_first_storage"


def sizes(site: Path) -> dict:
    files = [p for p in site.rglob("*") if p.is_file()]
    raw = sum(p.stat().st_size for p in files)
    gz = sum(len(gzip.compress(p.read_bytes(), compresslevel=6)) for p in files)
    return {"files": len(files), "mb_raw": round(raw / 1e6, 1), "mb_gzip": round(gz / 1e6, 1)}


def open_lesson(page, url: str) -> float:
    """Open lesson 01 in page; seconds until its kernel is idle."""
    t0 = time.monotonic()
    page.goto(f"{url}/lab/index.html?path={LESSON}.ipynb")
    page.wait_for_selector("text=Python (Pyodide) | Idle", timeout=300_000)
    return time.monotonic() - t0


def one_load(url: str) -> dict:
    browser = lite.Offline(url, CHROMIUM)
    try:
        page = browser.page()
        t0 = time.monotonic()
        idle = open_lesson(page, url)
        first = page.locator(".jp-CodeCell").first
        first.click()
        page.keyboard.press("Shift+Enter")
        first.locator(".jp-InputArea-prompt:has-text('[1]')").wait_for(timeout=300_000)
        ready = time.monotonic() - t0
        page.click("li.lm-MenuBar-item:has-text('Run')")
        page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
        page.wait_for_selector(".labkit-check", timeout=600_000)
        page.wait_for_selector("text=Python (Pyodide) | Idle", timeout=600_000)
        lesson = time.monotonic() - t0
        page.wait_for_timeout(2000)  # the service worker's cache writes of the last files
        context = page.context
        page.close()
        second = open_lesson(context.new_page(), url)
    finally:
        browser.close()
    return {"idle_s": round(idle, 1), "first_cell_s": round(ready, 1), "lesson_s": round(lesson, 1),
            "second_idle_s": round(second, 1), "outside": len(browser.outside)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", help="a site built already (default: build into artifacts/lite)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    report = {}
    if args.site:
        site = Path(args.site)
    else:
        site = paths.PROJECT / "artifacts" / "lite"
        report["build"] = lite.build(site)
    report["size"] = sizes(site)
    with lite.serve(site) as url:
        report["loads"] = [one_load(url) for _ in range(args.repeats)]
    for key in ("idle_s", "first_cell_s", "lesson_s", "second_idle_s"):
        report[f"median_{key}"] = statistics.median(r[key] for r in report["loads"])
    report["when"] = time.strftime("%Y-%m-%d")
    out = paths.PROJECT / "benchmarks" / "results" / "lite-site.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    size = report["size"]
    print(f"site: {size['files']} files, {size['mb_raw']} MB ({size['mb_gzip']} MB gzipped)")
    print(f"lesson {LESSON} in a fresh browser, median of {args.repeats}: kernel idle {report['median_idle_s']} s, "
          f"first cell run {report['median_first_cell_s']} s, whole lesson {report['median_lesson_s']} s; "
          f"second visit (same profile): kernel idle {report['median_second_idle_s']} s; "
          f"requests to other hosts: {sum(r['outside'] for r in report['loads'])}")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
