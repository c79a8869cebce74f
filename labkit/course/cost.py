"""What it costs (lesson 09): the benchmark a lesson runs in its lab VM, or replays from
benchmarks/results/, and its chart and table. Part of ``labkit.course.lesson.Lesson``."""

from __future__ import annotations

import html

from labkit import paths


class CostMixin:
    """``Lesson.bench()`` and ``Lesson.cost()``; the lesson gives live, clock, session and start()."""

    RECORDED_COST = "benchmarks/results/storage-cost-tcg.json"
    RECORDED_COST_ICOUNT = "benchmarks/results/storage-cost-icount.json"

    def bench(self, packets=2000, repeats=3, clock=None, recorded=False):
        """Every design's per-packet cost, measured by the lab kernel (``labkit.bench.storage``
        in the VM); in replay, the run recorded in benchmarks/results/. clock: None for
        the lab VM's own; "icount" counts guest instructions ("wall": ns), and a lab VM
        on the other clock is replaced by one on this clock first. recorded: the recording,
        live too (lesson 10 reads the run lesson 09 replays)."""
        import json

        clock = clock or self.clock
        if not self.live or recorded:
            rec = self.RECORDED_COST_ICOUNT if clock == "icount" else self.RECORDED_COST
            try:
                res = json.loads(paths.shipped(rec).read_text())
            except (OSError, ValueError) as exc:
                from labkit.course.errbox import LiveOnly

                raise LiveOnly(f"no recorded benchmark at {rec} ({exc})",
                               fix="run it live (./lab open), or record it: benchmarks/storage_cost.py") from None
            res["replay"] = rec
            return res
        from labkit.bench.designs import DESIGNS
        from labkit.bench.run import run_in_vm

        if clock != self.clock:
            if self.session is not None:
                print(f"Restarting the lab VM with clock={clock!r} (it ran clock={self.clock!r}) ...", flush=True)
                self.session.close()
                self.session = None
            self.clock = clock
        self.start()
        designs = len(DESIGNS) + 1  # skb storage runs twice: plain and inline
        what = "Counting guest instructions of" if clock == "icount" else "Timing"
        print(f"{what} {designs} designs x {repeats} repeats x {packets} packets in the lab VM "
              f"(about {max(10, designs * repeats * packets // (250 if clock == 'icount' else 2000))} s "
              f"under TCG) ...", flush=True)
        from labkit import kernel
        from labkit.course.facts import keep

        res = run_in_vm(self.session.lab, packets, repeats, timeout=1800)
        res["kernel_build"] = kernel.info(self.session.lab.kernel_dir)
        return keep(res, "bench")

    def recorded_on_another_kernel(self, res) -> str | None:
        """For a live run: what says that the recording the lesson's text quotes was made on
        another kernel (another Debian point release or patch series), else None."""
        import json

        if res.get("replay") or res.get("unit") != "instructions":
            return None
        try:
            rec = json.loads(paths.shipped(self.RECORDED_COST_ICOUNT).read_text())
        except (OSError, ValueError):
            return None
        mine, theirs = res.get("kernel_build") or {}, rec.get("kernel_build") or {}
        if not theirs or mine.get("key") == theirs.get("key"):
            return None
        why = ("another Debian point release" if mine.get("source") != theirs.get("source")
               else "another patch series or config")
        return (f"these counts are this lab kernel's ({mine.get('source', '?')}, build {mine.get('key', '?')}); "
                f"the figures the text quotes were recorded on {theirs.get('source', '?')} "
                f"(build {theirs.get('key', '?')}), {why}, so they may differ by a few instructions")

    def cost(self, res):
        """The benchmark's results as a chart (ratio to the floor, spread over repeats) and a table."""
        from IPython.display import HTML, SVG, display

        from labkit.bench import plot as costplot
        from labkit.course.errbox import banner

        if res.get("replay"):
            display(HTML(banner("#fff3bf", "#e67700", "RECORDED",
                              f"a run of <code>benchmarks/storage_cost.py</code> on {html.escape(res.get('kernel', '?'))}"
                              f" under {html.escape(str(res.get('accel', '?')).upper())}"
                              f"{' counting instructions' if res.get('unit') == 'instructions' else ''}, "
                              f"{html.escape(res.get('when', '?')[:10])}"
                              f" ({res.get('repeats')} repeats of {res.get('packets')} packets per design); "
                              + ("live mode counts them on this machine's lab kernel" if res.get("unit") == "instructions"
                                 else "live mode times this machine's lab kernel"))))
        other = self.recorded_on_another_kernel(res)
        if other:
            display(HTML(banner("#e7f5ff", "#1971c2", "ANOTHER KERNEL", html.escape(other))))
        display(SVG(costplot.chart(res)))
        display(HTML(costplot.bounds_html(res)))
        display(HTML(costplot.table_html(res)))
