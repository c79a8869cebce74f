// SPDX-License-Identifier: GPL-2.0
/* The first storage programs: one packet, three hooks, one map.
 *
 * tc ingress creates the storage and writes the token it finds in the
 * packet; cgroup_skb ingress and a socket filter on the receiving socket
 * read it back. Each reports what it saw through the "events" ring buffer
 * (user space cannot read an skb storage map: there is no key to name an
 * skb with). The skb_storage_free tracepoint counts elements freed with
 * their extension block, so a test can match allocations against frees.
 */
#include "lab_observe.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

SKB_STORAGE_MAP(storage, struct lab_value);

__u64 created;	/* storages this program created */
__u64 freed;	/* extension blocks freed while holding a storage */

SEC("tc")
int tc_writer(struct __sk_buff *ctx)
{
	if (!lab_packet_token(ctx))
		return TC_ACT_OK;
	if (lab_write(&storage, ctx, LAB_HOOK_TC_INGRESS, ctx->ifindex) == LAB_CREATED)
		__sync_fetch_and_add(&created, 1);
	return TC_ACT_OK;
}

SEC("cgroup_skb/ingress")
int cg_reader(struct __sk_buff *ctx)
{
	if (lab_packet_token(ctx))
		lab_observe(&storage, ctx, LAB_HOOK_CGROUP_INGRESS, ctx->ifindex);
	return 1; /* let it through */
}

SEC("socket")
int sock_reader(struct __sk_buff *ctx)
{
	if (lab_packet_token(ctx))
		lab_observe(&storage, ctx, LAB_HOOK_SOCKET_FILTER, ctx->ifindex);
	return ctx->len; /* keep the whole packet */
}

SEC("tp_btf/skb_storage_free")
int BPF_PROG(on_storage_free, const struct skb_ext_bpf_storage *owner, const struct bpf_map *map,
	     const struct sk_buff *skb)
{
	if (!skb) /* freed with its extension block (or its map), not deleted */
		__sync_fetch_and_add(&freed, 1);
	return 0;
}
