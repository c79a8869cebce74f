"""Error rendering, verifier log digestion, test-report counting: pure logic."""

from labkit.bpf.verifier import explain_log
from labkit.errors import LabError
from labkit.testrun import counts

LOG = """func#0 @0
0: R1=ctx() R10=fp0
; struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx); @ no_null_check.bpf.c:29
0: (85) call bpf_cast_to_kern_ctx#77862      ; R0_w=trusted_ptr_sk_buff()
; v = bpf_skb_storage_get(&storage, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE); @ no_null_check.bpf.c:31
1: (bf) r2 = r0                       ; R0_w=trusted_ptr_sk_buff() R2_w=trusted_ptr_sk_buff()
6: (85) call bpf_skb_storage_get#77860        ; R0_w=map_value_or_null(id=1,map=storage,ks=4,vs=8)
; *v = 42; @ no_null_check.bpf.c:32
7: (b7) r1 = 42                       ; R1_w=42
8: (7b) *(u64 *)(r0 +0) = r1
R0 invalid mem access 'map_value_or_null'
processed 8 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""


def test_explain_log_finds_the_complaint_and_the_c_line():
    headline, lines = explain_log(LOG)
    assert headline == "R0 invalid mem access 'map_value_or_null'"
    src = [ln for ln in lines if not ln.startswith("    ")]
    assert src[-1] == "no_null_check.bpf.c:32: *v = 42;"
    assert lines[-1].strip() == headline


def test_explain_log_without_line_info_still_has_a_headline():
    headline, lines = explain_log("0: (95) exit\nR0 !read_ok\nprocessed 1 insns\n")
    assert headline == "R0 !read_ok"


def test_lab_error_is_one_line_with_a_fix():
    err = LabError("no lab kernel", fix="run: labkit kernel build", details="a\nb")
    assert str(err) == "no lab kernel -- run: labkit kernel build"
    assert "\n" not in str(err)
    assert err.render().splitlines() == ["no lab kernel -- run: labkit kernel build", "  a", "  b"]


def test_counts_sums_junit_suites(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text('<testsuites><testsuite tests="5" failures="1" errors="1" skipped="2"/></testsuites>')
    assert counts(xml) == {"tests": 5, "failures": 1, "errors": 1, "skipped": 2}
    assert counts(tmp_path / "missing.xml") is None
