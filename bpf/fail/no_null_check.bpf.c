// SPDX-License-Identifier: GPL-2.0
/* Rejected on purpose: the value from bpf_skb_storage_get() is used
 * without a NULL check.
 *
 * get returns NULL when there is no storage (and no F_CREATE), when the
 * skb is shared with a clone, or when allocation fails, so the verifier
 * types the result "map_value_or_null" and refuses the store:
 *   R0 invalid mem access 'map_value_or_null'
 * Fix: if (!v) return TC_ACT_OK; before touching *v.
 */
#include "skb_storage.h"

char LICENSE[] SEC("license") = "GPL";

SKB_STORAGE_MAP(storage, __u64);

SEC("tc")
int no_null_check(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	__u64 *v;

	v = bpf_skb_storage_get(&storage, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	*v = 42;
	return TC_ACT_OK;
}
