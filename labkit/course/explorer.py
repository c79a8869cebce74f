"""Step through a run in the notebook: the lifetime graph grows event by event.

``Explorer(log)`` shows one packet's lifetime graph with the current event
drawn thick and the later ones faded, a slider (and Play) over the events
and a pane saying what the kernel did at that step. ``SideBySide`` walks two
or more runs with one slider (GRE next to VXLAN, veth next to redirect_peer,
one scenario with the three designs);
``Rerun`` runs a scenario again with other parameters, in place of the last
run. Which event each step shows comes from ``labkit.viz.frames``; the
widgets only display it. Steps count from 1, as the details pane says
("step 1 of 5").

Each is one output: the widget where widgets run (JupyterLab), and where
they do not (an HTML export without widget state, GitHub, a notebook opened
again untrusted) the same output's ``text/html``: the whole graph, static.
"""

from __future__ import annotations

import html

from labkit import viz
from labkit.errors import MissingTool

try:
    import ipywidgets as widgets
except ImportError:
    raise MissingTool("the Python package ipywidgets is not installed", fix="pip install ipywidgets==8.1.9") from None

PANE = "font-family: var(--jp-code-font-family, monospace); font-size: 12px; line-height: 1.4;"


def _details_html(text: str, step: int, total: int) -> str:
    lines = text.splitlines()
    head = f"<b>step {step} of {total}</b> &middot; {html.escape(lines[0])}" if lines else ""
    body = "<br>".join(html.escape(ln).replace("  ", "&nbsp;&nbsp;") for ln in lines[1:-1])
    raw = f"<pre style='margin:4px 0 0; color:#868e96; white-space:pre-wrap'>{html.escape(lines[-1])}</pre>"
    return f"<div style='{PANE}'>{head}<br>{body}{raw if len(lines) > 1 else ''}</div>"


def _titled(title, body) -> str:
    return (f"<h4 style='margin:2px 0'>{html.escape(title)}</h4>" if title else "") + body


class _Static:
    """A widget shown once: its mimebundle adds ``static_html()`` to the widget view, for where
    widgets do not run (JupyterLab prefers the widget; nbconvert takes the HTML without widget state)."""

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        if data is not None:
            data["text/html"] = self.static_html()
        return data


class Explorer(_Static, widgets.VBox):
    """One run, one packet: slider, Play, Previous/Next, the graph and the details of the current event."""

    def __init__(self, log, packet=None, title=None, controls=True, legend_below=False):
        self.eventlog, self.title, self.legend_below = log, title, legend_below
        self._cache = {}
        packets = log.packets()
        self.packet = packet if packet is not None else (packets[0] if packets else None)
        self.steps = viz.frames(log, self.packet)
        top = max(len(self.steps), 1)
        self.play = widgets.Play(min=1, max=top, interval=1200)
        self.slider = widgets.IntSlider(min=1, max=top, description="step", continuous_update=True,
                                        layout=widgets.Layout(width="360px"))
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.prev_button = widgets.Button(description="Previous", icon="step-backward",
                                          layout=widgets.Layout(width="110px"))
        self.next_button = widgets.Button(description="Next", icon="step-forward", layout=widgets.Layout(width="90px"))
        self.prev_button.on_click(lambda _: self.go(self.slider.value - 1))
        self.next_button.on_click(lambda _: self.go(self.slider.value + 1))
        self.packet_menu = None
        bar = [self.play, self.prev_button, self.slider, self.next_button]
        if len(packets) > 1:
            self.packet_menu = widgets.Dropdown(options=[(f"packet {p}", p) for p in packets], value=self.packet,
                                                description="packet", layout=widgets.Layout(width="170px"))
            self.packet_menu.observe(lambda ch: self.choose_packet(ch["new"]), names="value")
            bar.append(self.packet_menu)
        self.svg_html = widgets.HTML(layout=widgets.Layout(overflow="auto", max_width="100%"))
        self.details = widgets.HTML(layout=widgets.Layout(min_height="110px"))
        self.slider.observe(lambda ch: self._show(ch["new"]), names="value")
        head = [widgets.HTML(f"<h4 style='margin:2px 0'>{html.escape(title)}</h4>")] if title else []
        super().__init__(head + ([widgets.HBox(bar)] if controls else []) + [self.details, self.svg_html])
        self._enable()
        # Names a browser (and the browser test) can find the parts by.
        self.add_class("labkit-explorer")
        self.slider.add_class("labkit-step")
        self.details.add_class("labkit-details")
        self.svg_html.add_class("labkit-frame")
        self._show(self.slider.value)

    @property
    def seq(self):
        """The event seq of the current step (None for a log without packets)."""
        return self.steps[self.slider.value - 1] if self.steps else None

    def go(self, step: int):
        """Move to step ``step`` (1 is the first), clamped to this run's steps."""
        self.slider.value = min(max(step, 1), self.slider.max)

    def choose_packet(self, packet):
        self.packet = packet
        self.steps = viz.frames(self.eventlog, packet)
        self.play.max = self.slider.max = max(len(self.steps), 1)
        self._enable()
        if self.slider.value == 1:
            self._show(1)
        self.slider.value = 1

    def _enable(self):
        for w in (self.play, self.prev_button, self.slider, self.next_button):
            w.disabled = len(self.steps) < 2  # one step or none: nothing to move to

    def svg_for(self, step: int) -> str:
        """The lifetime graph at step ``step`` (from 1), drawn once and kept."""
        seq = self.steps[step - 1] if self.steps else None
        if (self.packet, seq) not in self._cache:
            graph = viz.lifetime_graph(self.eventlog, self.packet, current=seq, legend_below=self.legend_below)
            self._cache[(self.packet, seq)] = viz.svg(graph)
        return self._cache[(self.packet, seq)]

    def static_html(self) -> str:
        """The packet's whole lifetime graph, nothing highlighted: this output where widgets do not run."""
        if (self.packet, "static") not in self._cache:
            graph = viz.lifetime_graph(self.eventlog, self.packet, legend_below=self.legend_below)
            self._cache[(self.packet, "static")] = viz.figure_html(viz.svg(graph))
        return _titled(self.title, self._cache[(self.packet, "static")])

    def _show(self, step: int):
        self.svg_html.value = self.svg_for(step)
        if not self.steps:
            self.details.value = f"<div style='{PANE}'>no packet events in this log</div>"
            return
        self.details.value = _details_html(viz.frame_details(self.eventlog, self.steps[step - 1]), step,
                                           len(self.steps))


class SideBySide(_Static, widgets.VBox):
    """Runs next to each other (two, or the three designs), walked by one slider: step n of each; a
    shorter run stays at its end."""

    def __init__(self, *logs, titles=None):
        titles = titles or [f"run {i + 1}" for i in range(len(logs))]
        narrow = len(logs) > 2  # three graphs in a row: each legend under its graph
        self.sides = [Explorer(log, title=t, controls=False, legend_below=narrow) for log, t in zip(logs, titles)]
        top = max([len(side.steps) for side in self.sides] + [1])
        self.play = widgets.Play(min=1, max=top, interval=1200)
        self.slider = widgets.IntSlider(min=1, max=top, description="step", layout=widgets.Layout(width="420px"))
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.slider.observe(lambda ch: self._show(ch["new"]), names="value")
        for side in self.sides:
            side.layout = widgets.Layout(width=f"{100 / len(self.sides):.0f}%")
        super().__init__([widgets.HBox([self.play, self.slider]), widgets.HBox(self.sides)])
        self.add_class("labkit-side-by-side")

    def static_html(self) -> str:
        """The whole graphs next to each other."""
        panes = "".join(f'<div style="flex:1;min-width:0">{side.static_html()}</div>' for side in self.sides)
        return f'<div style="display:flex;gap:12px">{panes}</div>'

    def _show(self, step: int):
        for side in self.sides:
            side.go(step)


class Rerun(_Static, widgets.VBox):
    """Pick parameters, press Run, see the new run's step-through in place of the last one;
    ``run(**values)`` returns an EventLog."""

    def __init__(self, run, choices: dict, initial: dict | None = None, log=None, title=None):
        self._run, initial = run, dict(initial or {})
        self.dropdowns = {k: widgets.Dropdown(options=list(v), value=initial.get(k, list(v)[0]), description=k,
                                              layout=widgets.Layout(width="220px"))
                          for k, v in choices.items()}
        self.button = widgets.Button(description="Run", icon="play", button_style="primary")
        self.button.on_click(lambda _: self.run_now())
        self.error = widgets.HTML()
        self.area = widgets.VBox()
        self.explorer = None
        self.title = title
        super().__init__([widgets.HBox(list(self.dropdowns.values()) + [self.button]), self.error, self.area])
        if log is not None:
            self._show(log)

    @property
    def values(self) -> dict:
        return {k: d.value for k, d in self.dropdowns.items()}

    def run_now(self):
        """Run with the chosen values; a failure is shown as its message, the last good run stays below."""
        values = self.values
        self.button.disabled, self.button.description = True, "Running…"
        self.error.value = ""
        try:
            self._show(self._run(**values))
        except Exception as exc:  # noqa: BLE001 - whatever the run raised, the learner reads it
            self.error.value = (f"<div style='color:#c92a2a; {PANE} white-space:pre-wrap'><b>the run failed:</b> "
                                f"{html.escape(str(exc) or type(exc).__name__)}</div>")
        finally:
            self.button.disabled, self.button.description = False, "Run"

    def static_html(self) -> str:
        """The shown run's whole graph."""
        return self.explorer.static_html() if self.explorer else "<p>(no run yet: pick and press Run)</p>"

    def _show(self, log):
        params = ", ".join(f"{k}={v}" for k, v in self.values.items())
        self.explorer = Explorer(log, title=self.title or params)
        self.area.children = (self.explorer,)  # the new run replaces the last one
