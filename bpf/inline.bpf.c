// SPDX-License-Identifier: GPL-2.0
/* The lookup the verifier inlines (kernel patch 0010): programs whose
 * bpf_skb_storage_get() with flags 0 becomes loads and compares, for
 * tests/lab/test_inline.py to check that it finds exactly what the kfunc
 * finds. Each runs under BPF_PROG_TEST_RUN on a fresh skb; results go to
 * the global `res`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "skb_storage.h"

char LICENSE[] SEC("license") = "GPL";

struct small {
	__u64 a, b;
};

SKB_STORAGE_MAP(small_a, struct small);
SKB_STORAGE_MAP(small_b, struct small);

struct inner_map {
	__uint(type, BPF_MAP_TYPE_SKB_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct small);
};

struct inner_map inner_0 SEC(".maps");
struct inner_map inner_1 SEC(".maps");

/* Two inner maps of one shape: the verifier sees one template for both. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, int);
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { [0] = &inner_0, [1] = &inner_1 },
};

struct {
	__s64 v[8];
} res;

/* Create, then look up (the lookup is inlined): the same value back. */
SEC("tc")
int create_then_lookup(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct small *v, *w;

	v = bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v)
		return TC_ACT_OK;
	v->a = 41;
	w = bpf_skb_storage_get(&small_a, skb, NULL, 0, 0);
	res.v[0] = w == v;
	res.v[1] = w ? w->a : -1;
	/* the other map has nothing on this skb */
	res.v[2] = bpf_skb_storage_get(&small_b, skb, NULL, 0, 0) == NULL;
	return TC_ACT_OK;
}

/* Create in inner_0, then look up in inner_0 and inner_1 through one call
 * site: only the map passed at run time may match.
 */
SEC("tc")
int inner_lookup(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct small *v, *w;
	int i, zero = 0;
	void *map;

	map = bpf_map_lookup_elem(&outer, &zero);
	if (!map)
		return TC_ACT_OK;
	v = bpf_skb_storage_get(map, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v)
		return TC_ACT_OK;
	v->a = 42;
#pragma clang loop unroll(disable)
	for (i = 0; i < 2; i++) {
		int key = i;

		map = bpf_map_lookup_elem(&outer, &key);
		if (!map)
			return TC_ACT_OK;
		w = bpf_skb_storage_get(map, skb, NULL, 0, 0);
		res.v[i] = w ? (w == v ? 1 : 2) : 0;  /* 1: the created one, 0: NULL */
	}
	res.v[2] = 1; /* ran */
	return TC_ACT_OK;
}

/* Create, delete, look up: a deleted element stays in the block and must
 * not be found.
 */
SEC("tc")
int lookup_after_delete(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct small *v;

	v = bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v)
		return TC_ACT_OK;
	res.v[0] = bpf_skb_storage_delete(&small_a, skb);
	res.v[1] = bpf_skb_storage_get(&small_a, skb, NULL, 0, 0) == NULL;
	res.v[2] = 1; /* ran */
	return TC_ACT_OK;
}
