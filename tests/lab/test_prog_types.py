"""Which program types may call bpf_skb_storage_get/delete (bpf/prog_types.bpf.c)."""

import pytest

from labkit.bpf.build import obj_path
from labkit.bpf.ffi import BPF_NETFILTER, BPF_PROG_TYPE_NETFILTER
from labkit.bpf.libbpf import BpfObject
from labkit.errors import LabError, VerifierError

ALLOWED = ["t_socket", "t_tc", "t_action", "t_cgroup_skb", "t_sk_skb", "t_lwt_in", "t_sockops",
           "t_tp_btf", "t_netfilter", "t_lsm"]
REFUSED = {
    "r_flow_dissector": "calling kernel function bpf_skb_storage_get is not allowed",
    "r_sk_reuseport": "calling kernel function bpf_skb_storage_get is not allowed",
    "r_sleepable": "calling kernel function bpf_skb_storage_get is not allowed",
    "r_fentry_untrusted": "calling kernel function bpf_skb_storage_get is not allowed",
}
TYPES = {"t_netfilter": (BPF_PROG_TYPE_NETFILTER, BPF_NETFILTER)}


def load(name):
    return BpfObject(obj_path("prog_types"), programs=[name], prog_types=TYPES)


@pytest.mark.parametrize("name", ALLOWED)
def test_allowed_program_type_loads(name):
    with load(name) as obj:
        assert obj.program(name).fd >= 0


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_program_type_does_not_load(name):
    with pytest.raises(LabError) as exc:
        load(name)
    err = exc.value
    assert isinstance(err, VerifierError), err.render()
    assert REFUSED[name] in err.log, err.render()
