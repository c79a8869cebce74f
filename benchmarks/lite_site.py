"""The static JupyterLite site: how big it is and how long a learner waits for a kernel.

    .venv/bin/python benchmarks/lite_site.py [--site DIR] [--repeats N] [--compare OLD]

Builds the site (labkit lite build, into artifacts/lite unless --site names a built
one), then reports its size raw and gzipped (what a server that compresses sends),
and, in headless Chromium on a fresh profile each time (an empty browser cache) with
every other host blocked: the time from opening lesson 01 to the kernel being idle,
to its first code cell having run, and to the whole lesson having run (Run All, in
replay). Then the same learner comes back: lesson 01 opened again in a new tab of the
same profile (the site in the browser's and the service worker's caches, the first tab
closed), and the time to its kernel being idle ("second_idle_s"). With each, the CPU time the
browser's processes spent on it ("cpu_s", "second_cpu_s": what the machine's cores had to give,
whatever the load from other work on it).
Results: benchmarks/results/lite-site.json. With --compare OLD (another built site, say the
one before a change), the loads of the two sites alternate in one session, on a machine whose
load comes and goes, and both sites' medians are printed (nothing is written).
"""

import argparse
import gzip
import json
import os
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


def cpu_seconds() -> float:
    """CPU time (user + system) of this process's descendants that are still running: the
    browser Playwright started (Linux's /proc)."""
    parent, ticks = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        pid = int(stat.parent.name)
        parent[pid], ticks[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    mine, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parent.items() if pp == pid and p not in mine]
        mine.update(kids)
        todo += kids
    return sum(ticks[p] for p in mine) / os.sysconf("SC_CLK_TCK")


def open_lesson(page, url: str) -> tuple[float, float]:
    """Open lesson 01 in page; seconds until its kernel is idle, and the browser's CPU seconds."""
    cpu, t0 = cpu_seconds(), time.monotonic()
    page.goto(f"{url}/lab/index.html?path={LESSON}.ipynb")
    page.wait_for_selector("text=Python (Pyodide) | Idle", timeout=300_000)
    return time.monotonic() - t0, cpu_seconds() - cpu


def settled(page, timeout_s=60):
    """Wait until no service worker of the site is installing (the site's precaching one puts
    JupyterLab's scripts in its cache then, after the kernel is up): a learner comes back later."""
    busy = "async () => (await navigator.serviceWorker.getRegistrations()).some(r => r.installing || r.waiting)"
    deadline = time.monotonic() + timeout_s
    while page.evaluate(busy) and time.monotonic() < deadline:
        page.wait_for_timeout(500)


def one_load(url: str) -> dict:
    browser = lite.Offline(url, CHROMIUM)
    try:
        page = browser.page()
        t0 = time.monotonic()
        idle, cpu = open_lesson(page, url)
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
        settled(page)
        context = page.context
        page.close()
        second, second_cpu = open_lesson(context.new_page(), url)
    finally:
        browser.close()
    return {"idle_s": round(idle, 1), "first_cell_s": round(ready, 1), "lesson_s": round(lesson, 1),
            "second_idle_s": round(second, 1), "cpu_s": round(cpu, 1), "second_cpu_s": round(second_cpu, 1),
            "load": round(os.getloadavg()[0], 1), "outside": len(browser.outside)}


KEYS = ("idle_s", "first_cell_s", "lesson_s", "second_idle_s", "cpu_s", "second_cpu_s")


def compare(site: Path, old: Path, repeats: int) -> int:
    """Loads of site and old alternating (old first, then new first, ...); both sites' medians."""
    loads = {old: [], site: []}
    with lite.serve(old) as old_url, lite.serve(site) as url:
        urls = {old: old_url, site: url}
        for i in range(repeats):
            for which in (old, site) if i % 2 == 0 else (site, old):
                loads[which].append(one_load(urls[which]))
                print(which, loads[which][-1], flush=True)
    for which, name in ((old, "old"), (site, "new")):
        medians = {key: round(statistics.median(r[key] for r in loads[which]), 2) for key in KEYS}
        print(f"{name} ({which}), median of {repeats}: {medians}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", help="a site built already (default: build into artifacts/lite)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare", metavar="OLD", help="another built site: loads alternate with it, nothing written")
    args = ap.parse_args()
    report = {}
    if args.site:
        site = Path(args.site)
    else:
        site = paths.PROJECT / "artifacts" / "lite"
        report["build"] = lite.build(site)
    if args.compare:
        return compare(site, Path(args.compare), args.repeats)
    report["size"] = sizes(site)
    with lite.serve(site) as url:
        report["loads"] = [one_load(url) for _ in range(args.repeats)]
    for key in KEYS:
        report[f"median_{key}"] = statistics.median(r[key] for r in report["loads"])
    report["when"] = time.strftime("%Y-%m-%d")
    out = paths.PROJECT / "benchmarks" / "results" / "lite-site.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    size = report["size"]
    print(f"site: {size['files']} files, {size['mb_raw']} MB ({size['mb_gzip']} MB gzipped)")
    print(f"lesson {LESSON} in a fresh browser, median of {args.repeats}: kernel idle {report['median_idle_s']} s, "
          f"first cell run {report['median_first_cell_s']} s, whole lesson {report['median_lesson_s']} s; "
          f"second visit (same profile): kernel idle {report['median_second_idle_s']} s; browser CPU "
          f"{report['median_cpu_s']} s / {report['median_second_cpu_s']} s; "
          f"requests to other hosts: {sum(r['outside'] for r in report['loads'])}")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
