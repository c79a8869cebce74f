// SPDX-License-Identifier: GPL-2.0
/* Programs for the second read of the storage series
 * (tests/lab/test_second_read.py): each one provokes a fault that read
 * found (N1-N5) or shows the rule that fixed it. Results go to `res`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "skb_storage.h"

char LICENSE[] SEC("license") = "GPL";

/* Small enough to be kept in the extension block (patch 0008). */
struct small {
	__u64 a, b;
};

SKB_STORAGE_MAP(small_a, struct small);

struct {
	__s64 v[8];
	__u64 addr[32];
	__u32 n;
	__u32 len;
	__u32 target;
	__u32 token;
} res;

#define RES_COUNT(i) __sync_fetch_and_add(&res.v[i], 1)

/* ---- N1: tracepoints that do not own their skb ---------------------------- */

/* net_dev_xmit fires after the driver took the skb: dummy has freed it. */
SEC("tp_btf/net_dev_xmit")
int BPF_PROG(xmit_create, struct sk_buff *skb, int rc, struct net_device *dev, unsigned int skb_len)
{
	if (skb_len != res.len)
		return 0;
	if (bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		RES_COUNT(0);
	return 0;
}

/* qdisc_enqueue fires after q->enqueue(): another CPU may have sent it. */
SEC("tp_btf/qdisc_enqueue")
int BPF_PROG(enqueue_create, struct Qdisc *q, const struct netdev_queue *txq, struct sk_buff *skb)
{
	if (bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		RES_COUNT(0);
	return 0;
}

/* The tracepoints whose skb is the firing context's own: each creates on
 * the test's frame (its length in res.len) and counts in its own slot.
 */
#define OWNED(name, tp, slot)								\
SEC("tp_btf/" tp)									\
int BPF_PROG(name, struct sk_buff *skb)							\
{											\
	/* the frame as sent, or as received (Ethernet header pulled) */		\
	if (skb->len != res.len && skb->len != res.len - 14)				\
		return 0;								\
	if (bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))	\
		RES_COUNT(slot);							\
	return 0;									\
}

OWNED(queue_create, "net_dev_queue", 1)
OWNED(start_xmit_create, "net_dev_start_xmit", 2)
OWNED(receive_create, "netif_receive_skb", 3)

/* ---- N2: one call site, reached with flags 0 and with F_CREATE ------------- */

/* r5 is BPF_LOCAL_STORAGE_GET_F_CREATE when the packet's mark is 0x1234
 * and 0 otherwise, and both paths meet at the one call. Loaded with
 * BPF_F_TEST_STATE_FREQ the verifier keeps a state at the meeting point,
 * walks the flags-0 path first and compares the F_CREATE path with it:
 * unless r5 is precise there, it prunes that path as already seen. The
 * program returns 1 when the call returned an element.
 */
SEC("tc")
__attribute__((naked)) int create_by_mark(void)
{
	asm volatile (
	"r6 = *(u32 *)(r1 + %[mark_off]);"
	"call %[bpf_cast_to_kern_ctx];"
	"r2 = r0;"
	"r1 = %[small_a] ll;"
	"r3 = 0;"
	"r4 = 0;"
	"r5 = 1;"
	"if r6 == 0x1234 goto 1f;"
	"r5 = 0;"
	"1:"
	"call %[bpf_skb_storage_get];"
	"if r0 == 0 goto 2f;"
	"r0 = 1;"
	"2:"
	"exit;"
	:
	: [mark_off] "i"(__builtin_offsetof(struct __sk_buff, mark)),
	  [bpf_cast_to_kern_ctx] "i"(bpf_cast_to_kern_ctx),
	  [bpf_skb_storage_get] "i"(bpf_skb_storage_get),
	  [small_a] "i"(&small_a)
	: "memory");
}

/* ---- N3: spare extension blocks --------------------------------------------- */

/* Creates an element and records the extension block's address. */
SEC("tc")
int record_block(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	__u32 i;

	if (!bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return 0;
	i = res.n;
	if (i < 32) {
		res.addr[i] = (__u64)(unsigned long)skb->extensions;
		res.n = i + 1;
	}
	return 1;
}

/* ---- N5: the free event's owner may be NULL -------------------------------- */

/* Counts free events with no owner (v[4]) and with one (v[5]). */
SEC("tp_btf/skb_storage_free")
int BPF_PROG(free_owner, const struct skb_ext_bpf_storage *owner, const struct bpf_map *map,
	     const struct sk_buff *skb)
{
	/* The two paths do different things, so that the compiler keeps a
	 * branch of its own for each: with a shared tail it branches around
	 * one store, and a verifier that takes owner for non-NULL still
	 * keeps both paths.
	 */
	if (!owner) {
		res.v[4] += 1;
		return 0;
	}
	RES_COUNT(5);
	return 0;
}

/* Creates an element of small_a: the test frees its map with the skb's
 * element still on a held packet.
 */
SEC("tc")
int tag(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);

	if (bpf_skb_storage_get(&small_a, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		RES_COUNT(6);
	return TC_ACT_OK;
}

/* ---- N4: the plain design (knob 0) allocates, sizes and copies as the RFC ---- */

/* The slab allocations made while armed: where, and the cache's object size. */
struct {
	__u64 ptr[64];
	__u32 size[64];
	__u32 n;
	__u32 armed;
} allocs SEC(".data.allocs");

/* raw_tp: a tp_btf program may not read the tracepoint's void *ptr. */
SEC("raw_tp/kmem_cache_alloc")
int BPF_PROG(alloc_seen, unsigned long call_site, const void *ptr, struct kmem_cache *s)
{
	__u32 i;

	if (!allocs.armed)
		return 0;
	i = allocs.n;
	if (i < 64) {
		allocs.ptr[i] = (__u64)(unsigned long)ptr;
		allocs.size[i] = BPF_CORE_READ(s, object_size);
		allocs.n = i + 1;
	}
	return 0;
}

/* Kept across a netns crossing, copied to clones. */
struct {
	__uint(type, BPF_MAP_TYPE_SKB_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE | BPF_F_SKB_KEEP_NETNS);
	__type(key, int);
	__type(value, struct small);
} kept SEC(".maps");

/* What kind of block the skb's storage is in: skb_ext->bpf_elem (whether it
 * has an element area and uses it) and whether its chunk points at a
 * bpf_local_storage, then the element's value.
 */
static void block_kind(struct sk_buff *skb, int at)
{
	struct skb_ext *ext = BPF_CORE_READ(skb, extensions);
	__u8 off = BPF_CORE_READ(ext, offset[SKB_EXT_BPF_STORAGE]);
	void *storage = NULL;
	struct small *v;

	res.v[at] = BPF_CORE_READ(ext, bpf_elem);
	bpf_probe_read_kernel(&storage, sizeof(storage), (void *)ext + off * 8);
	res.v[at + 1] = storage != NULL;
	v = bpf_skb_storage_get(&kept, skb, NULL, 0, 0);
	res.v[at + 2] = v ? (__s64)v->a : -1;
}

/* tc egress in the first namespace: an element of kept holding the token. */
SEC("tc")
int keep_create(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct small *v;

	v = bpf_skb_storage_get(&kept, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (v) {
		v->a = res.token;
		res.v[0] = 1;
	}
	return TC_ACT_OK;
}

/* tc ingress in the second: the block the crossing copied the element to,
 * then a clone of the packet to res.target.
 */
SEC("tc")
int keep_probe(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);

	if (!bpf_skb_storage_get(&kept, skb, NULL, 0, 0))
		return TC_ACT_OK;
	block_kind(skb, 1);
	res.v[4] = bpf_clone_redirect(ctx, res.target, 0);
	return TC_ACT_OK;
}

/* tc egress of the clone's target: the clone's block. */
SEC("tc")
int keep_clone_seen(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);

	if (!bpf_skb_storage_get(&kept, skb, NULL, 0, 0))
		return TC_ACT_OK;
	block_kind(skb, 5);
	return TC_ACT_OK;
}
