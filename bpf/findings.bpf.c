// SPDX-License-Identifier: GPL-2.0
/* Programs for the kernel-truth findings (tests/lab/test_findings.py): each
 * one provokes a fault a review found in the storage series, or shows a rule
 * the two implementations must share. Results go to the global `res`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "skb_storage.h"

char LICENSE[] SEC("license") = "GPL";

/* Small enough to be kept inline by the optimised implementation. */
struct small {
	__u64 a, b;
};

/* Too big for that: always a bpf_local_storage element. */
struct big {
	__u64 a[8];
};

SKB_STORAGE_MAP(small_a, struct small);
SKB_STORAGE_MAP(small_b, struct small);
SKB_STORAGE_MAP(big_a, struct big);

/* Finding 1: an skb storage map as the inner map of a map-in-map. */
struct inner_map {
	__uint(type, BPF_MAP_TYPE_SKB_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct small);
} inner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, int);
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { [0] = &inner },
};

struct {
	__s64 v[8];
	__u64 addr[32];
	__u32 n;
	__u32 spin;
	__u32 target;
} res;

static long spin_inner(__u64 i, void *ctx)
{
	return 0;
}

static long spin_once(__u64 i, void *ctx)
{
	bpf_loop(32, spin_inner, NULL, 0);
	return 0;
}

/* Finding 1: create storage in the inner map, looked up in the outer one
 * (res.spin: how long to spin between the two, for a test with a second CPU).
 */
SEC("tc")
int inner_create(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	int zero = 0;
	void *map;
	struct small *v;

	if (ctx->protocol != bpf_htons(0x0800)) /* the device's own IPv6 chatter */
		return TC_ACT_OK;
	map = bpf_map_lookup_elem(&outer, &zero);
	if (!map)
		return TC_ACT_OK;
	res.v[1] = 1; /* found the inner map */
	res.v[2] = bpf_ktime_get_ns();
	bpf_loop(res.spin, spin_once, NULL, 0);
	res.v[3] = bpf_ktime_get_ns();
	v = bpf_skb_storage_get(map, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	res.v[0] = v != NULL;
	if (v)
		v->a = 7;
	return TC_ACT_OK;
}

/* Finding 4: a deleted element's memory must not become another map's:
 * p = get(A); delete(A); q = get(B); *p = 1 must leave *q alone.
 */
SEC("tc")
int alias_after_delete(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct small *p, *q;

	p = bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p)
		return TC_ACT_OK;
	res.v[0] = bpf_skb_storage_delete(&small_a, skb);
	q = bpf_skb_storage_get(&small_b, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!q)
		return TC_ACT_OK;
	q->a = 5;
	p->a = 1;
	res.v[1] = q->a;
	res.v[2] = p == q;
	/* And A created again is a new element too. */
	p->b = 9;
	q = bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	res.v[3] = q ? q->b : -1;
	return TC_ACT_OK;
}

/* Finding 4 (map lifetime) and 8 (free event at map free): give the packet
 * an element of small_a (inline-sized) and one of big_a, keep going.
 */
SEC("tc")
int tag_both(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct small *s;
	struct big *b;

	if (ctx->protocol != bpf_htons(0x0800)) /* the device's own IPv6 chatter */
		return TC_ACT_OK;
	s = bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	b = bpf_skb_storage_get(&big_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (s)
		s->a = 1;
	if (b)
		b->a[0] = 1;
	res.v[0] += s != NULL;
	res.v[1] += b != NULL;
	return TC_ACT_OK;
}

/* Finding 7: where each packet's element lives. */
SEC("tc")
int record_addr(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct big *b;
	__u32 n = res.n;

	b = bpf_skb_storage_get(&big_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!b || n >= 32)
		return TC_ACT_OK;
	res.addr[n] = (__u64)(unsigned long)b;
	res.n = n + 1;
	return TC_ACT_OK;
}

/* Finding 9: how many 8-byte chunks the block has once storage exists. */
SEC("tc")
int chunk_size(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct big *b;

	b = bpf_skb_storage_get(&big_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	res.v[0] = b != NULL;
	res.v[1] = BPF_CORE_READ(skb, extensions, chunks);
	res.v[2] = BPF_CORE_READ(skb, extensions, offset[SKB_EXT_BPF_STORAGE]);
	return TC_ACT_OK;
}

/* Finding 5: a peeked UDP skb is shared (the queue and the reader hold it);
 * storage must be refused there, and allowed on a skb the reader owns.
 */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(peek_create, const struct sk_buff *skb, int len)
{
	struct small *v;
	__u32 i;

	if (len != 20000)
		return 0;
	v = bpf_skb_storage_get(&small_a, (struct sk_buff *)skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	i = res.n;
	if (i < 8) {
		res.v[i] = v ? 1 : 0;
		res.n = i + 1;
	}
	return 0;
}

/* Finding 8: the free event of a block (skb NULL) and of a delete. */
SEC("tp_btf/skb_storage_free")
int BPF_PROG(free_count, const struct skb_ext_bpf_storage *owner, const struct bpf_map *map,
	     const struct sk_buff *skb)
{
	__u32 i = res.n;

	if (i < 32) {
		__u64 name = 0;

		/* By map free the map's id is 0 already: name it by its name. */
		bpf_probe_read_kernel(&name, sizeof(name), map->name);
		res.addr[i] = name | ((__u64)(skb != NULL) << 63);
		res.n = i + 1;
	}
	return 0;
}

/* Finding 8: a free program that reads the skb without a NULL check. The
 * block's release passes NULL: the verifier must refuse this one.
 */
SEC("tp_btf/skb_storage_free")
int BPF_PROG(free_deref, const struct skb_ext_bpf_storage *owner, const struct bpf_map *map,
	     const struct sk_buff *skb)
{
	res.v[0] = skb->len;
	return 0;
}

/* Finding 2: create then delete an element of small_a. */
SEC("tc")
int create_delete(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);

	if (!bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return TC_ACT_OK;
	res.v[0] = bpf_skb_storage_delete(&small_a, skb);
	return TC_ACT_OK;
}

/* Finding 2: deleting from inside the free event of that very delete. */
SEC("tp_btf/skb_storage_free")
int BPF_PROG(free_reenter, const struct skb_ext_bpf_storage *owner, const struct bpf_map *map,
	     const struct sk_buff *skb)
{
	if (skb)
		res.v[1] = bpf_skb_storage_delete(&small_a, (struct sk_buff *)skb);
	return 0;
}

/* Finding 3: creating storage from inside a scrub. */
SEC("tp_btf/skb_storage_scrub")
int BPF_PROG(scrub_reenter, const struct sk_buff *skb, const struct bpf_map *map, void *location,
	     bool xnet, enum skb_scrub_reason reason, bool kept)
{
	bpf_skb_storage_get(&small_b, (struct sk_buff *)skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	return 0;
}

/* Finding 3: creating storage on the clone from inside a clone event. */
SEC("tp_btf/skb_storage_clone")
int BPF_PROG(clone_reenter, const struct sk_buff *skb, const struct sk_buff *clone, const struct bpf_map *map)
{
	bpf_skb_storage_get(&small_a, (struct sk_buff *)clone, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	return 0;
}

/* Finding 6: clone first (the clone shares the block, which holds no BPF
 * storage, only another extension), then create on the original.
 */
SEC("tc")
int clone_then_create(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct small *v;

	if (ctx->protocol != bpf_htons(0x0800) || res.n)
		return TC_ACT_OK;
	res.n = 1;
	res.v[0] = BPF_CORE_READ_BITFIELD_PROBED(skb, active_extensions);
	res.v[1] = bpf_clone_redirect(ctx, res.target, 0);
	v = bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	res.v[2] = v != NULL;
	return TC_ACT_OK;
}

/* Finding 10: a pointer walked from the skb (untrusted) handed to a kfunc
 * whose argument is the context's kernel type: it must take the context
 * path (and be refused there), never the trusted-pointer path.
 */
SEC("tc")
int walked_pointer(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct sk_buff *next = skb->next;

	if (!next)
		return TC_ACT_OK;
	bpf_skb_storage_get(&small_a, next, NULL, 0, 0);
	return TC_ACT_OK;
}

/* Finding 11: what small_a holds on this skb (v[4]: the value's a, or -1). */
SEC("tc")
int observe_small(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct small *v;

	if (ctx->protocol != bpf_htons(0x0800))
		return TC_ACT_OK;
	v = bpf_skb_storage_get(&small_a, skb, NULL, 0, 0);
	res.v[4] = v ? (__s64)v->a : -1;
	res.v[5] += 1;
	return TC_ACT_OK;
}
