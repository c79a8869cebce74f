// SPDX-License-Identifier: GPL-2.0
/* A program written for the RFC's API, kept exactly as such a program is
 * written: its own extern __ksym declarations, the 5-argument get, the skb
 * from bpf_cast_to_kern_ctx(ctx), the map declared with
 * __uint(type, BPF_MAP_TYPE_SKB_STORAGE). It proves the lab kernel is
 * source-compatible: it builds against the lab vmlinux.h unchanged and,
 * run with `bpftool prog run`, creates, writes, reads back and deletes.
 *
 * Results are globals (bpftool map dump name rfc_comp.bss):
 *   created = 1 when the first get with F_CREATE returned storage
 *   readback = the value a second get (no F_CREATE) returned
 *   deleted = bpf_skb_storage_delete's answer (0)
 *   again = bpf_skb_storage_delete's second answer (-ENOENT = -2)
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern void *bpf_skb_storage_get(struct bpf_map *map, struct sk_buff *skb,
				 void *value, __u32 value__szk, __u64 flags) __ksym;
extern int bpf_skb_storage_delete(struct bpf_map *map, struct sk_buff *skb) __ksym;
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

struct value {
	__u64 cookie;
};

struct {
	__uint(type, BPF_MAP_TYPE_SKB_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct value);
} rfc_map SEC(".maps");

int created;
__u64 readback;
int deleted = 1;
int again = 1;

SEC("tc")
int rfc_tc(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct value *v;

	v = bpf_skb_storage_get(&rfc_map, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v)
		return 0;
	created = 1;
	v->cookie = 0x5eed5eed;

	v = bpf_skb_storage_get(&rfc_map, skb, NULL, 0, 0);
	if (v)
		readback = v->cookie;

	deleted = bpf_skb_storage_delete(&rfc_map, skb);
	again = bpf_skb_storage_delete(&rfc_map, skb);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
