// SPDX-License-Identifier: GPL-2.0
/* Storage written at tc ingress, read at hooks whose programs do not get a
 * __sk_buff: sock_ops (the skb of the TCP header option callbacks) and the
 * kfree_skb tracepoint (the skb being dropped). tests/lab/test_later_hooks.py
 * sends the packets.
 */
#include "lab_observe.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SKB_STORAGE_MAP(storage, struct lab_value);

/* Writes the packet's token into storage at tc ingress. */
SEC("tc")
int tc_writer(struct __sk_buff *ctx)
{
	if (lab_packet_token(ctx))
		lab_write(&storage, ctx, LAB_HOOK_TC_INGRESS, ctx->ifindex);
	return TC_ACT_OK;
}

/* Proves: a sock_ops program reads the storage of the packet TCP is
 * parsing, through bpf_sock_ops_kern->skb (trusted, may be NULL).
 */
SEC("sockops")
int sockops_reader(struct bpf_sock_ops *ctx)
{
	struct bpf_sock_ops_kern *kctx;
	struct lab_value *v;
	struct sk_buff *skb;

	switch (ctx->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		/* ask for BPF_SOCK_OPS_PARSE_HDR_OPT_CB on every packet */
		bpf_sock_ops_cb_flags_set(ctx, ctx->bpf_sock_ops_cb_flags |
					  BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
		break;
	case BPF_SOCK_OPS_PARSE_HDR_OPT_CB:
		kctx = bpf_cast_to_kern_ctx(ctx);
		skb = kctx->skb;
		if (!skb)
			break;
		v = bpf_skb_storage_get(&storage, skb, NULL, 0, 0);
		if (v)
			lab_emit(skb, LAB_HOOK_SOCK_OPS, 0, LAB_PRESENT, v, 0, 0, 0);
		break;
	}
	return 1;
}

/* Proves: the kfree_skb tracepoint sees the storage of the packet being
 * dropped (it is freed right after, with the skb).
 */
SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_reader, struct sk_buff *skb)
{
	struct lab_value *v = bpf_skb_storage_get(&storage, skb, NULL, 0, 0);

	if (v)
		lab_emit(skb, LAB_HOOK_KFREE_SKB, 0, LAB_PRESENT, v, 0, 0, 0);
	return 0;
}
