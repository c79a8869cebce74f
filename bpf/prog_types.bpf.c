// SPDX-License-Identifier: GPL-2.0
/* Which program types may call the skb storage kfuncs.
 *
 * Every program here creates storage on the skb its hook hands it and
 * deletes it again. tests/lab/test_prog_types.py loads each one alone:
 * the t_* programs must load, the r_* programs must be refused by the
 * verifier (the test checks the reason).
 */
#include "skb_storage.h"
#include "lab_records.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SKB_STORAGE_MAP(storage, struct lab_value);

static __always_inline int touch(struct sk_buff *skb)
{
	struct lab_value *v;

	v = bpf_skb_storage_get(&storage, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (v)
		v->writes++;
	return bpf_skb_storage_delete(&storage, skb);
}

/* Proves: socket filters may (skb from bpf_cast_to_kern_ctx). */
SEC("socket")
int t_socket(struct __sk_buff *ctx)
{
	touch(bpf_cast_to_kern_ctx(ctx));
	return 0;
}

/* Proves: tc classifiers may. */
SEC("tc")
int t_tc(struct __sk_buff *ctx)
{
	touch(bpf_cast_to_kern_ctx(ctx));
	return TC_ACT_OK;
}

/* Proves: tc actions (act_bpf) may. */
SEC("action")
int t_action(struct __sk_buff *ctx)
{
	touch(bpf_cast_to_kern_ctx(ctx));
	return TC_ACT_OK;
}

/* Proves: cgroup_skb programs may. */
SEC("cgroup_skb/ingress")
int t_cgroup_skb(struct __sk_buff *ctx)
{
	touch(bpf_cast_to_kern_ctx(ctx));
	return 1;
}

/* Proves: sk_skb programs may. */
SEC("sk_skb/stream_verdict")
int t_sk_skb(struct __sk_buff *ctx)
{
	touch(bpf_cast_to_kern_ctx(ctx));
	return 1; /* SK_PASS */
}

/* Proves: LWT programs may. */
SEC("lwt_in")
int t_lwt_in(struct __sk_buff *ctx)
{
	touch(bpf_cast_to_kern_ctx(ctx));
	return 0; /* BPF_OK */
}

/* Proves: sock_ops programs may, with the skb of the header option
 * callbacks, after checking it for NULL (it is NULL in the others).
 */
SEC("sockops")
int t_sockops(struct bpf_sock_ops *ctx)
{
	struct bpf_sock_ops_kern *kctx = bpf_cast_to_kern_ctx(ctx);
	struct sk_buff *skb = kctx->skb;

	if (skb)
		touch(skb);
	return 1;
}

/* Proves: tp_btf programs may: the tracepoint's skb is trusted. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(t_tp_btf, struct sk_buff *skb)
{
	touch(skb);
	return 0;
}

/* Proves: netfilter programs may (libbpf 1.1 has no "netfilter" section;
 * the test sets the type).
 */
SEC("netfilter")
int t_netfilter(struct bpf_nf_ctx *ctx)
{
	touch(ctx->skb);
	return 1; /* NF_ACCEPT */
}

/* Proves: non-sleepable LSM programs may. */
SEC("lsm/socket_sock_rcv_skb")
int BPF_PROG(t_lsm, struct sock *sk, struct sk_buff *skb)
{
	touch(skb);
	return 0;
}

/* Proves: flow dissector programs may not (no kfunc set is registered). */
SEC("flow_dissector")
int r_flow_dissector(struct __sk_buff *ctx)
{
	touch(bpf_cast_to_kern_ctx(ctx));
	return 0;
}

/* Proves: sk_reuseport programs may not. */
SEC("sk_reuseport")
int r_sk_reuseport(struct sk_reuseport_md *ctx)
{
	struct sk_reuseport_kern *kctx = bpf_cast_to_kern_ctx(ctx);

	touch(kctx->skb);
	return 1; /* SK_PASS */
}

/* Proves: sleepable programs may not, even a hook the kfuncs would
 * otherwise allow. (The skb is a stand-in: the call is refused first.)
 */
SEC("lsm.s/socket_sendmsg")
int BPF_PROG(r_sleepable, struct socket *sock, struct msghdr *msg, int size)
{
	touch((struct sk_buff *)msg);
	return 0;
}

/* Proves: fentry programs may not call the kfuncs: their skb argument is
 * not trusted, and the kfunc filter lets tracing programs through only
 * on the tracepoints that own their skb (tests/lab/test_second_read.py).
 */
SEC("fentry/consume_skb")
int BPF_PROG(r_fentry_untrusted, struct sk_buff *skb)
{
	touch(skb);
	return 0;
}
