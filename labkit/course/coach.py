"""Help between the TODO and the solution: a hint per exercise, and the starter back.

    from labkit.course import coach
    coach.hint("01")     # a "Show a hint" button; then where the solution is
    coach.reset("01")    # run in a cell: that cell becomes the exercise's starter again

The starter is the exercise cell as committed in the lesson (``notebooks/``
of the lab's own install), never the learner's copy, so it comes back
however the learner's notebook was edited. ``reset`` replaces the cell it
runs in through IPython's ``set_next_input(..., replace=True)``, which
JupyterLab and Notebook 7 honour; elsewhere it prints the starter.
"""

from __future__ import annotations

import html

from labkit import paths
from labkit.errors import LabError

# One nudge per exercise: what to look at, not the code.
HINTS = {
    "01": ("The same kfunc does both jobs: bpf_skb_storage_get(&stamps, bpf_cast_to_kern_ctx(ctx), NULL, 0, "
           "flags). Only the flags differ between creating the storage (tc ingress) and looking it up "
           "(socket filter). Either call may return NULL, and the verifier wants you to check before you "
           "touch the value. The delay is the clock now minus what tc wrote."),
    "02": ("Read the verifier's last lines: the register it complains about is typed map_value_or_null, "
           "and the line it points at writes through it. bpf_skb_storage_get() may return NULL even with "
           "BPF_LOCAL_STORAGE_GET_F_CREATE (a clone sharing the extensions, a failed allocation). "
           "What does cg_read do with its pointer that tc_write does not?"),
    "03": ("bpf_skb_storage_get() answers NULL both for 'nothing there' and for 'shared with a clone', so "
           "it cannot tell them apart. The other kfunc can: lesson 02's table lists what "
           "bpf_skb_storage_delete() answers, and one of its error codes means the skb shares its storage."),
    "04": ("Fill a struct carry_opt before returning from tc_encap: the class in network byte order "
           "(bpf_htons), a type of your choice, the length in 4-byte words of data after the header, and "
           "the note; the option is set after the tunnel key. In tc_decap, bpf_skb_get_tunnel_opt() fills "
           "the same struct (check it returned the whole struct and your class), and "
           "bpf_skb_storage_get() can create the storage from an initial value: its third and fourth "
           "arguments."),
    "05": ("Ask two questions of each crossing. Does the skb go through skb_scrub_packet()? Every scrub "
           "resets the skb's extensions, where the storage lives. And does that scrub say it crosses into "
           "another namespace (its xnet argument)? Only then is skb->mark cleared. A veth scrubs on every "
           "transmit; bpf_redirect_peer() takes another path into the peer's namespace."),
    "06": ("Both tracepoints hand your program the struct sk_buff * being freed: with BPF_PROG from "
           "bpf_tracing.h it is an ordinary argument. The stash's key is that pointer as a __u64, computed "
           "the way tc_stash does it; delete it from my_stash in each program (deleting a key that is not "
           "there is harmless)."),
    "08": ("Follow the note: it is written before encapsulation in lk-a, the packet crosses the veth into "
           "lk-b, and is decapsulated there. Name the kind of scrub at each step. Each keep flag keeps an "
           "element across scrubs of one kind only, and BPF_F_CLONE is about clones, which this path has "
           "none of. The flags combine with |, next to BPF_F_NO_PREALLOC."),
    "10": ("There is no map to declare: every packet has one buffer. bpf_dynptr_from_skb_ext(ctx, 0, flags, &ptr) "
           "opens it; BPF_SKB_EXT_F_CREATE makes it at tc ingress, 0 only opens it in the socket filter (it "
           "fails when there is none). Then bpf_dynptr_write(&ptr, 0, &stamp, sizeof(stamp), 0) and "
           "bpf_dynptr_read(&stamp, sizeof(stamp), &ptr, 0, 0), or a slice (bpf_dynptr_slice_rdwr / "
           "bpf_dynptr_slice) checked for NULL. The delay is the clock now minus what tc wrote."),
}

NOTEBOOKS = paths.shipped("notebooks")


def lesson_of(exercise) -> str:
    """'01', 1, '01_first_storage' or a path -> '01' (an exercise that has a hint)."""
    key = str(exercise).strip().rsplit("/", 1)[-1]
    key = key.split("_", 1)[0].removesuffix(".ipynb")
    if key.isdigit():
        key = f"{int(key):02d}"
    if key not in HINTS:
        raise LabError(f"no exercise {exercise!r}", fix=f"one of {', '.join(sorted(HINTS))}")
    return key


def _notebook(folder, ex):
    found = sorted(folder.glob(f"{ex}_*.ipynb"))
    if not found:
        raise LabError(f"no lesson {ex} in {folder}", fix="is this the lab's install? (labkit doctor)")
    return found[0]


def lesson_path(exercise):
    """The committed lesson (the lab's own notebooks/), never the learner's copy."""
    return _notebook(NOTEBOOKS, lesson_of(exercise))


def solution_path(exercise):
    return _notebook(NOTEBOOKS / "solutions", lesson_of(exercise))


def starter(exercise) -> str:
    """The exercise cell's text as committed in the lesson."""
    import nbformat

    path = lesson_path(exercise)
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
    if not cells:
        raise LabError(f"{path.name} has no exercise cell (tag 'exercise')")
    return cells[0].source


def reset(exercise) -> None:
    """Put the exercise's starter into the cell this runs in (JupyterLab replaces
    the cell's text); without a notebook front end, print it."""
    text = starter(exercise)
    name = lesson_path(exercise).name
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = None
    shell = get_ipython() if get_ipython else None
    if shell is None or not hasattr(shell, "set_next_input"):
        print(text)
        return
    shell.set_next_input(text, replace=True)
    print(f"The starter of exercise {lesson_of(exercise)} is back in this cell (from the lesson as "
          f"committed, {name}). Run the cell to compile it.")


def solution_pointer(exercise) -> str:
    sol = solution_path(exercise)
    return (f"Still stuck? The solution is the notebook solutions/{sol.name} next to this lesson "
            f"(in the lab: {sol}).")


class Hint:
    """A "Show a hint" button; a second click says where the solution is. Where
    widgets do not run, the hint and the pointer print as plain text."""

    def __init__(self, exercise):
        self.exercise = lesson_of(exercise)
        self.text = HINTS[self.exercise]
        self.pointer = solution_pointer(self.exercise)

    def __repr__(self):
        return f"Hint for exercise {self.exercise}: {self.text}\n{self.pointer}"

    def widget(self):
        import ipywidgets as w

        button = w.Button(description="Show a hint", icon="lightbulb-o", layout=w.Layout(width="auto"))
        out = w.HTML()
        box = w.VBox([button, out])
        box.add_class("labkit-hint")
        out.add_class("labkit-hint-text")

        def clicked(_):
            if not out.value:
                out.value = (f'<div style="border-left:6px solid #1565c0;padding:4px 10px">'
                             f"<b>Hint:</b> {html.escape(self.text)}</div>")
                button.description = "Where is the solution?"
                button.icon = "question"
            else:
                sol = solution_path(self.exercise).name
                out.value += (f'<div class="labkit-solution-pointer" style="border-left:6px solid #555;'
                              f'padding:4px 10px;margin-top:4px">Still stuck? The solution is the notebook '
                              f'<a href="solutions/{sol}" target="_blank"><code>solutions/{sol}</code></a> '
                              f"next to this lesson. Read the check's lines again first: they say what the kernel "
                              f"did.</div>")
                button.disabled = True
                button.layout.display = "none"

        button.on_click(clicked)
        return box

    def _repr_mimebundle_(self, include=None, exclude=None):
        plain = repr(self)
        try:
            box = self.widget()
        except ImportError:
            return {"text/plain": plain}
        bundle = box._repr_mimebundle_(include=include, exclude=exclude)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = plain  # an HTML export, GitHub, a console: the hint as text
        return bundle


def hint(exercise) -> Hint:
    """The exercise's hint, revealed by a button (displayed when it is a cell's last expression)."""
    return Hint(exercise)
