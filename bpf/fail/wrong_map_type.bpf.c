// SPDX-License-Identifier: GPL-2.0
/* Rejected on purpose: a hash map handed to bpf_skb_storage_get().
 *
 * The kfunc's map argument takes any map as far as BTF can tell; the lab
 * kernel's verifier checks the type and answers
 *   cannot pass map_type 1 into func bpf_skb_storage_get: it takes only
 *   BPF_MAP_TYPE_SKB_STORAGE (34)
 * Fix: declare the map with __uint(type, BPF_MAP_TYPE_SKB_STORAGE) and
 * BPF_F_NO_PREALLOC.
 */
#include "skb_storage.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, int);
	__type(value, __u64);
} not_storage SEC(".maps");

SEC("tc")
int wrong_map_type(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	__u64 *v;

	v = bpf_skb_storage_get(&not_storage, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (v)
		*v = 1;
	return TC_ACT_OK;
}
