"""A LabError in a notebook is a box with the message, the fix and the details, not a traceback;
the cell still fails, and the output says so in its metadata (``labkit_error``)."""

import os

import pytest

from labkit.bench.designs import BenchError
from labkit.course import errbox
from labkit.errors import LabError
from labkit.runtime.parts import ScenarioError
from labkit.runtime.session import Interrupted

LABKIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(errbox.__file__)))  # labkit/


class FakeShell:
    def __init__(self):
        self.tracebacks = []
        self.custom = None

    def showtraceback(self, exc_tuple, tb_offset=None):
        self.tracebacks.append(exc_tuple)

    def set_custom_exc(self, exc_tuple, handler):
        self.custom = (exc_tuple, handler)


@pytest.fixture
def shown(monkeypatch):
    """What errbox.show() displayed: (data, metadata) pairs."""
    import IPython.display

    out = []
    monkeypatch.setattr(IPython.display, "display", lambda data, raw, metadata: out.append((data, metadata)))
    return out


def test_the_box_has_message_fix_and_details_escaped():
    exc = BenchError("the benchmark failed in the lab VM: namespace lk-bench_tx already exists <b>",
                     fix="run it again", details="Traceback line 1\nRunError: <script>")
    page = errbox.box_html(exc)
    assert "BenchError" in page and "namespace lk-bench_tx already exists &lt;b&gt;" in page
    assert "<b>Fix:</b> run it again" in page
    assert "RunError: &lt;script&gt;" in page and "<script>" not in page
    assert 'class="labkit-error"' in page
    text = errbox.text(exc)
    assert text.splitlines()[:2] == ["BenchError: the benchmark failed in the lab VM: namespace lk-bench_tx "
                                     "already exists <b>", "Fix: run it again"]
    assert "  RunError: <script>" in text


def test_metadata_says_what_failed():
    info = errbox.info(ScenarioError("scenario mine: hook tc/ingress names device 'lk-x', which namespace b "
                                     "does not have", fix="devices in b: lk-b0, lk-t"))
    assert info == {"ename": "ScenarioError", "message": "scenario mine: hook tc/ingress names device 'lk-x', "
                    "which namespace b does not have", "fix": "devices in b: lk-b0, lk-t", "details": "",
                    "interrupted": False}


def test_an_interrupt_is_a_short_note():
    exc = Interrupted("the benchmark: interrupted; it stopped and removed its namespaces", fix="run the cell again")
    page = errbox.box_html(exc)
    assert "Interrupted" in page and "#fff8e1" in page and "#ffebee" not in page
    assert errbox.info(exc)["interrupted"] is True


def test_handler_shows_a_lab_error_as_the_box(shown):
    shell = FakeShell()
    try:
        raise LabError("device 'lk-t' is in 2 namespaces of mine", fix="write NS/DEV; devices: a/lk-t, b/lk-t")
    except LabError as exc:
        assert errbox.handler(shell, type(exc), exc, exc.__traceback__) == []
    assert shell.tracebacks == []
    (data, meta), = shown
    assert "write NS/DEV" in data["text/html"] and "write NS/DEV" in data["text/plain"]
    assert meta["labkit_error"]["ename"] == "LabError"


def _raise_in(filename):
    """A KeyboardInterrupt raised from code that claims to live in filename."""
    scope = {}
    exec(compile("def work():\n    raise KeyboardInterrupt\n", filename, "exec"), scope)
    try:
        scope["work"]()
    except KeyboardInterrupt as exc:
        return exc


def test_a_ctrl_c_inside_labkit_is_a_note(shown):
    shell = FakeShell()
    exc = _raise_in(os.path.join(LABKIT_DIR, "bench", "storage.py"))
    assert errbox.handler(shell, KeyboardInterrupt, exc, exc.__traceback__) == []
    assert shell.tracebacks == []
    (data, meta), = shown
    assert meta["labkit_error"]["interrupted"] is True
    assert "interrupted in work;" in data["text/plain"] and "run the cell again" in data["text/plain"]


def test_a_ctrl_c_in_your_own_code_keeps_the_traceback(shown):
    shell = FakeShell()
    exc = _raise_in("<ipython-input-1>")
    assert errbox.handler(shell, KeyboardInterrupt, exc, exc.__traceback__) == []
    assert shown == []
    assert len(shell.tracebacks) == 1 and shell.tracebacks[0][1] is exc


def test_install_registers_lab_errors_and_interrupts():
    shell = FakeShell()
    assert errbox.install(shell) is shell
    kinds, handler = shell.custom
    assert set(kinds) == {LabError, KeyboardInterrupt} and handler is errbox.handler


def test_in_a_real_kernel_the_cell_fails_with_a_box_and_no_traceback():
    """What JupyterLab and nbclient see: a display_data with the box and labkit_error metadata, no
    error output, and an execute reply with status error."""
    pytest.importorskip("ipykernel")
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=os.path.dirname(LABKIT_DIR))
    try:
        def cell(code):
            msg_id = kc.execute(code)
            outs = []
            while True:
                msg = kc.get_iopub_msg(timeout=60)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] in ("display_data", "error", "stream"):
                    outs.append(msg)
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return kc.get_shell_msg(timeout=60)["content"], outs

        reply, _ = cell("from labkit.course import errbox\nerrbox.install()")
        assert reply["status"] == "ok", reply
        reply, outs = cell("from labkit.runtime.parts import ScenarioError\n"
                           "raise ScenarioError('scenario mine: no packets to send', fix='add a Packet')")
        assert reply["status"] == "error" and reply["ename"] == "ScenarioError", reply
        assert [m["msg_type"] for m in outs] == ["display_data"], outs
        content = outs[0]["content"]
        assert content["metadata"]["labkit_error"]["message"] == "scenario mine: no packets to send"
        assert "add a Packet" in content["data"]["text/html"]
        reply, outs = cell("raise KeyboardInterrupt")  # the learner's own: IPython's usual traceback
        assert reply["status"] == "error" and [m["msg_type"] for m in outs] == ["error"], outs
        # the setup cell installs it before it can fail
        reply, outs = cell("get_ipython().set_custom_exc((), None)\nfrom labkit.course.lesson import start\nstart('bogus')")
        assert reply["ename"] == "LabError" and [m["msg_type"] for m in outs] == ["display_data"], outs
        assert "use MODE = 'live', 'replay' or None" in outs[0]["content"]["data"]["text/plain"]
        reply, outs = cell("print('still fine')")
        assert reply["status"] == "ok" and outs[0]["content"]["text"] == "still fine\n"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
