// SPDX-License-Identifier: GPL-2.0
/* Writers and observers for the lifetime tests: put storage on a packet at
 * one tc hook, look for it at a later one. tests/lab/test_lifetime.py
 * attaches them around clones, veth pairs and tunnels; every event carries
 * the sk_buff's address, so a test can tell the same skb from another one.
 */
#include "lab_observe.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

SKB_STORAGE_MAP(storage, struct lab_value);

/* The .data map, set and read by the test after load: where clone_writer
 * sends its clone, and what bpf_clone_redirect() answered last time.
 */
struct clone_cfg {
	__u32 ifindex;
	__u32 pad;
	__s64 ret;
} clone_cfg = { .ret = 1 };
__u64 freed;

/* Proves (with an observer further on): storage created here travels, or not. */
SEC("tc")
int writer_ingress(struct __sk_buff *ctx)
{
	if (lab_packet_token(ctx))
		lab_write(&storage, ctx, LAB_HOOK_TC_INGRESS, ctx->ifindex);
	return TC_ACT_OK;
}

SEC("tc")
int writer_egress(struct __sk_buff *ctx)
{
	if (lab_packet_token(ctx))
		lab_write(&storage, ctx, LAB_HOOK_TC_EGRESS, ctx->ifindex);
	return TC_ACT_OK;
}

/* Reports present, absent or refused for every test packet it sees. */
SEC("tc")
int observe_ingress(struct __sk_buff *ctx)
{
	if (lab_packet_token(ctx))
		lab_observe(&storage, ctx, LAB_HOOK_TC_INGRESS, ctx->ifindex);
	return TC_ACT_OK;
}

SEC("tc")
int observe_egress(struct __sk_buff *ctx)
{
	if (lab_packet_token(ctx))
		lab_observe(&storage, ctx, LAB_HOOK_TC_EGRESS, ctx->ifindex);
	return TC_ACT_OK;
}

SEC("cgroup_skb/ingress")
int observe_cgroup(struct __sk_buff *ctx)
{
	if (lab_packet_token(ctx))
		lab_observe(&storage, ctx, LAB_HOOK_CGROUP_INGRESS, ctx->ifindex);
	return 1;
}

/* Proves: bpf_clone_redirect() makes a clone that shares the extension
 * block. Writes storage, clones the packet out of clone_ifindex (where
 * observe_egress sees the clone), then looks at the original again while
 * the clone may still be alive.
 */
SEC("tc")
int clone_writer(struct __sk_buff *ctx)
{
	if (!lab_packet_token(ctx))
		return TC_ACT_OK;
	lab_write(&storage, ctx, LAB_HOOK_TC_INGRESS, ctx->ifindex);
	clone_cfg.ret = bpf_clone_redirect(ctx, clone_cfg.ifindex, 0);
	lab_observe(&storage, ctx, LAB_HOOK_AFTER_CLONE, ctx->ifindex);
	return TC_ACT_OK;
}

/* Counts storage elements freed with their extension block. */
SEC("tp_btf/skb_storage_free")
int BPF_PROG(on_storage_free, const struct skb_ext_bpf_storage *owner, const struct bpf_map *map,
	     const struct sk_buff *skb)
{
	if (!skb) /* freed with its extension block (or its map), not deleted */
		__sync_fetch_and_add(&freed, 1);
	return 0;
}
