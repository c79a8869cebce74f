// SPDX-License-Identifier: GPL-2.0
/* Rejected on purpose: an initial value bigger than the map's value.
 *
 * bpf_skb_storage_get() copies the initial value in as the map's value, so
 * its size must be the value's. The lab kernel's verifier answers
 *   cannot pass an initial value of 8 bytes into func bpf_skb_storage_get: the
 *   map's value is 4 bytes
 * Fix: pass the field the map stores (&opt.value, sizeof(opt.value)), not
 * the struct around it.
 */
#include "skb_storage.h"

char LICENSE[] SEC("license") = "GPL";

SKB_STORAGE_MAP(notes, __u32);

struct carry_opt {
	__u32 head;
	__u32 value;
};

SEC("tc")
int init_size(struct __sk_buff *ctx)
{
	struct carry_opt opt = { .head = 1, .value = ctx->mark };

	bpf_skb_storage_get(&notes, bpf_cast_to_kern_ctx(ctx), &opt, sizeof(opt),
			    BPF_LOCAL_STORAGE_GET_F_CREATE);
	return TC_ACT_OK;
}
