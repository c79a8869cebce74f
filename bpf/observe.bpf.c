// SPDX-License-Identifier: GPL-2.0
/* The runtime's observer: the one object labkit.runtime.run loads for every
 * scenario. It proves nothing by itself; it reports what the kernel did.
 *
 * - lab_tc_ingress / lab_tc_egress, lab_cgroup_ingress, lab_sock_filter and
 *   lab_tap_filter see each test packet (one carrying LAB_MAGIC), first do
 *   what the scenario asked of that hook (the "actions" map: write or
 *   delete a slot, set the mark, clone the packet, redirect it to a peer),
 *   then report every slot's state: skb storage A, skb storage B and the
 *   side stash, a hash map keyed by the skb's address.
 * - Lifecycle observers follow every skb a hook has seen (the "tracked"
 *   map) and its clones: skb_clone(), skb_scrub_packet() with its callers,
 *   the skb's release, each map's element allocated on an skb (with the
 *   map's name), the storage's release with the extension block, and
 *   the side stash's clean-up at the consume_skb/kfree_skb tracepoints.
 * - On a kernel with the bpf_skb_storage tracepoints the runtime loads the
 *   lab_tp_* programs instead of the two storage kprobes: each element's
 *   creation, copy to a clone, scrub (dropped or kept, with the call site)
 *   and release, straight from the kernel.
 */
#include "lab_observe.h"
#include "skb_ext.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define TC_ACT_UNSPEC (-1)

SKB_STORAGE_MAP(storage_a, struct lab_value);
SKB_STORAGE_MAP(storage_b, struct lab_value);

/* The design that needs no kernel change: a hash keyed by the skb pointer. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct lab_value);
} stash SEC(".maps");

/* The gated stash: the same, for skbs armed with bpf_trace_skb() and reaped
 * at the gated skb_free tracepoint (kernel patch 0012).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct lab_value);
} gated SEC(".maps");

/* Extension blocks holding a tracked skb's metadata buffer: their free is
 * reported (the free tracepoint names the block, not an skb).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} meta_blocks SEC(".maps");

/* skb address -> packet id, for the lifecycle observers. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} tracked SEC(".maps");

/* What the scenario asks of each hook, set by the runtime before traffic. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct lab_point);
	__type(value, struct lab_action);
} actions SEC(".maps");

/* An empty record of this kind, stamped with the time and CPU. */
static __always_inline struct lab_record *lab_reserve_blank(__u32 kind)
{
	struct lab_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r)
		return NULL;
	__builtin_memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->t_ns = bpf_ktime_get_ns();
	r->cpu = bpf_get_smp_processor_id();
	return r;
}

/* A record about skb: its address, extension block, mark and device. */
static __always_inline struct lab_record *lab_reserve(__u32 kind, struct sk_buff *skb)
{
	struct lab_record *r = lab_reserve_blank(kind);
	struct net_device *dev;

	if (!r)
		return NULL;
	r->skb = (__u64)(unsigned long)skb;
	r->ext = (__u64)(unsigned long)BPF_CORE_READ(skb, extensions);
	r->mark = BPF_CORE_READ(skb, mark);
	dev = BPF_CORE_READ(skb, dev);
	if (dev) {
		r->ifindex = BPF_CORE_READ(dev, ifindex);
		r->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
		bpf_probe_read_kernel_str(r->ifname, sizeof(r->ifname), dev->name);
	}
	return r;
}

static __always_inline __u32 *lab_tracked(struct sk_buff *skb)
{
	__u64 key = (__u64)(unsigned long)skb;

	return bpf_map_lookup_elem(&tracked, &key);
}

/* Slot i of a storage map: present (with its value), absent or refused. */
#define lab_slot_storage(map, i, skb, r)					\
	do {									\
		struct lab_value *__v = bpf_skb_storage_get(map, skb, NULL, 0, 0); \
		if (__v) {							\
			r->state[i] = LAB_PRESENT;				\
			r->value[i] = __v->token;				\
		} else {							\
			r->err[i] = bpf_skb_storage_delete(map, skb);		\
			r->state[i] = r->err[i] == -EOPNOTSUPP ? LAB_REFUSED : LAB_ABSENT; \
		}								\
	} while (0)

#define lab_write_storage(map, i, skb, val, created)				\
	do {									\
		struct lab_value __init = { .token = val, .t_ns = bpf_ktime_get_ns() }; \
		struct lab_value *__v = bpf_skb_storage_get(map, skb, NULL, 0, 0); \
		if (!__v) {							\
			__v = bpf_skb_storage_get(map, skb, &__init, sizeof(__init), \
						  BPF_LOCAL_STORAGE_GET_F_CREATE); \
			if (__v)						\
				created |= 1 << i;				\
		}								\
		if (__v) {							\
			__v->token = val;					\
			__v->writes++;						\
		}								\
	} while (0)

/* Slot 3, the skb's metadata buffer, opened read-only: absent (-ENOENT)
 * or present with the value at its start. Not inlined: the dynptr's stack
 * slots are this function's, so the caller's other stack use cannot
 * overwrite a dynptr the verifier still tracks.
 */
static __noinline void lab_slot_meta(struct sk_buff *skb, struct lab_record *r)
{
	struct lab_value v = {};
	struct bpf_dynptr d;
	int err;

	err = bpf_dynptr_from_skb_ext((struct __sk_buff *)skb, 0, 0, &d);
	if (!err)
		err = bpf_dynptr_read(&v, sizeof(v), &d, 0, 0);
	if (err) {
		r->err[3] = err;
		return;
	}
	r->state[3] = LAB_PRESENT;
	r->value[3] = v.token;
}

/* Write value to the buffer, creating it: bit 3 of *created when it was new. */
static __noinline void lab_write_meta(struct sk_buff *skb, __u32 val, __u32 *created)
{
	struct lab_value v = {};
	struct bpf_dynptr d;

	if (bpf_dynptr_from_skb_ext((struct __sk_buff *)skb, 0, 0, &d) == -ENOENT)
		*created |= 1 << 3;
	if (bpf_dynptr_from_skb_ext((struct __sk_buff *)skb, 0, BPF_SKB_EXT_F_CREATE, &d))
		return;
	bpf_dynptr_read(&v, sizeof(v), &d, 0, 0);
	if (*created & (1 << 3))
		v.t_ns = bpf_ktime_get_ns();
	v.token = val;
	v.writes++;
	bpf_dynptr_write(&d, 0, &v, sizeof(v), 0);
}

/* Arm the skb for the gated tracepoints and stash value by its address. */
static __always_inline void lab_write_gated(struct sk_buff *skb, __u32 val, __u32 pkt, __u32 *created)
{
	struct lab_value v = { .token = val, .t_ns = bpf_ktime_get_ns(), .writes = 1 };
	__u64 key = (__u64)(unsigned long)skb;
	struct lab_record *r;
	int err;

	err = bpf_trace_skb(skb, 0);
	if (!bpf_map_lookup_elem(&gated, &key))
		*created |= 1 << 4;
	bpf_map_update_elem(&gated, &key, &v, BPF_ANY);
	r = lab_reserve(LAB_K_GATED_ARM, skb);
	if (!r)
		return;
	r->packet = pkt;
	r->err[4] = err;
	r->value[4] = val;
	bpf_ringbuf_submit(r, 0);
}

static __always_inline void lab_report(struct sk_buff *skb, __u32 hook, __u32 ifindex, __u32 pkt,
				       __u32 created, __u32 flags)
{
	struct lab_record *r = lab_reserve(LAB_K_HOOK, skb);
	__u64 key = (__u64)(unsigned long)skb;
	struct lab_value *sv;

	if (!r)
		return;
	r->hook = hook;
	if (ifindex)
		r->ifindex = ifindex;
	r->packet = pkt;
	r->flags = flags;
	lab_slot_storage(&storage_a, 0, skb, r);
	lab_slot_storage(&storage_b, 1, skb, r);
	sv = bpf_map_lookup_elem(&stash, &key);
	if (sv) {
		r->state[2] = LAB_PRESENT;
		r->value[2] = sv->token;
	}
	lab_slot_meta(skb, r);
	sv = bpf_map_lookup_elem(&gated, &key);
	if (sv) {
		r->state[4] = LAB_PRESENT;
		r->value[4] = sv->token;
	}
#pragma unroll
	for (int i = 0; i < LAB_SLOTS; i++)
		if ((created & (1 << i)) && r->state[i] == LAB_PRESENT)
			r->state[i] = LAB_CREATED;
	bpf_ringbuf_submit(r, 0);
}

/* Everything a hook does to a test packet; 'tc' is a constant per caller. */
static __always_inline int lab_hook(struct __sk_buff *ctx, __u32 hook, int tc, int pass)
{
	__u32 tok = lab_packet_token(ctx);
	struct sk_buff *skb;
	struct lab_point pt = {};
	struct lab_action *act;
	__u32 created = 0;
	__u64 key;

	if (!tok)
		return pass;
	skb = bpf_cast_to_kern_ctx(ctx);
	key = (__u64)(unsigned long)skb;
	bpf_map_update_elem(&tracked, &key, &tok, BPF_ANY);

	pt.ifindex = tc ? ctx->ifindex : 0; /* socket-side hooks: one action per namespace */
	pt.hook = hook;
	{
		struct net_device *dev = BPF_CORE_READ(skb, dev);

		if (dev)
			pt.netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	}
	act = bpf_map_lookup_elem(&actions, &pt);
	if (act) {
		__u32 va = act->value[0] ? act->value[0] : tok;
		__u32 vb = act->value[1] ? act->value[1] : tok;
		__u32 vs = act->value[2] ? act->value[2] : tok;

		if (act->write & 1)
			lab_write_storage(&storage_a, 0, skb, va, created);
		if (act->write & 2)
			lab_write_storage(&storage_b, 1, skb, vb, created);
		if (act->write & 4) {
			struct lab_value v = { .token = vs, .t_ns = bpf_ktime_get_ns() };

			if (!bpf_map_lookup_elem(&stash, &key))
				created |= 4;
			bpf_map_update_elem(&stash, &key, &v, BPF_ANY);
		}
		if (act->write & 8)
			lab_write_meta(skb, act->value[3] ? act->value[3] : tok, &created);
		if (act->write & 16)
			lab_write_gated(skb, act->value[4] ? act->value[4] : tok, tok, &created);
		if (act->del & 1)
			bpf_skb_storage_delete(&storage_a, skb);
		if (act->del & 2)
			bpf_skb_storage_delete(&storage_b, skb);
		if (act->del & 4)
			bpf_map_delete_elem(&stash, &key);
		if (act->del & 16)
			bpf_map_delete_elem(&gated, &key);
		if (tc && act->mark)
			ctx->mark = act->mark;
	}
	lab_report(skb, hook, ctx->ifindex, tok, created, 0);
	if (!tc || !act)
		return pass;
	if (act->clone_ifindex) {
		long ret = bpf_clone_redirect(ctx, act->clone_ifindex, 0);

		lab_report(skb, LAB_HOOK_AFTER_CLONE, ctx->ifindex, tok, 0, (__u32)(ret + 1));
	}
	if (act->redirect_peer)
		return bpf_redirect_peer(act->redirect_peer, 0);
	return pass;
}

SEC("tc")
int lab_tc_ingress(struct __sk_buff *ctx)
{
	return lab_hook(ctx, LAB_HOOK_TC_INGRESS, 1, TC_ACT_UNSPEC);
}

SEC("tc")
int lab_tc_egress(struct __sk_buff *ctx)
{
	return lab_hook(ctx, LAB_HOOK_TC_EGRESS, 1, TC_ACT_UNSPEC);
}

SEC("cgroup_skb/ingress")
int lab_cgroup_ingress(struct __sk_buff *ctx)
{
	return lab_hook(ctx, LAB_HOOK_CGROUP_INGRESS, 0, 1);
}

/* On the receiving socket; returning the length keeps the whole packet. */
SEC("socket")
int lab_sock_filter(struct __sk_buff *ctx)
{
	lab_hook(ctx, LAB_HOOK_SOCKET_FILTER, 0, 0);
	return ctx->len;
}

/* On an AF_PACKET tap: it runs on the original, before the tap clones it. */
SEC("socket")
int lab_tap_filter(struct __sk_buff *ctx)
{
	lab_hook(ctx, LAB_HOOK_AF_PACKET, 0, 0);
	return ctx->len;
}

/* A cls_bpf classifier (not direct-action) that matches test packets, for
 * tc actions such as mirred to act on them: -1 selects the filter's class.
 */
SEC("tc")
int lab_match(struct __sk_buff *ctx)
{
	return lab_packet_token(ctx) ? -1 : 0;
}

/* ---- lifecycle ------------------------------------------------------------------ */

/* The stack of a BPF trampoline does not unwind to the caller, so the
 * kprobe at skb_clone's entry keeps the callers for the fexit below.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[LAB_STACK]);
} clone_stack SEC(".maps");

SEC("kprobe/skb_clone")
int BPF_KPROBE(lab_on_clone_entry, struct sk_buff *skb)
{
	__u32 zero = 0;
	__u64 *st;

	if (!lab_tracked(skb))
		return 0;
	st = bpf_map_lookup_elem(&clone_stack, &zero);
	if (st)
		bpf_get_stack(ctx, st, sizeof(__u64) * LAB_STACK, 0);
	return 0;
}

SEC("fexit/skb_clone")
int BPF_PROG(lab_on_clone, struct sk_buff *skb, gfp_t pri, struct sk_buff *ret)
{
	struct lab_record *r;
	__u32 *pkt = lab_tracked(skb);
	__u64 key = (__u64)(unsigned long)ret;
	__u32 p;

	if (!pkt || !ret)
		return 0;
	p = *pkt;
	bpf_map_update_elem(&tracked, &key, &p, BPF_ANY);
	r = lab_reserve(LAB_K_CLONE, ret);
	if (!r)
		return 0;
	r->other = (__u64)(unsigned long)skb;
	r->packet = p;
	{
		__u32 zero = 0;
		__u64 *st = bpf_map_lookup_elem(&clone_stack, &zero);

		if (st) {
			__builtin_memcpy(r->stack, st, sizeof(r->stack));
			__builtin_memset(st, 0, sizeof(__u64) * LAB_STACK);
		}
	}
	bpf_ringbuf_submit(r, 0);
	return 0;
}

static __always_inline void lab_scrubbed(void *ctx, struct sk_buff *skb, bool xnet)
{
	struct lab_record *r;
	__u32 *pkt = lab_tracked(skb);

	if (!pkt)
		return;
	r = lab_reserve(LAB_K_SCRUB, skb);
	if (!r)
		return;
	r->packet = *pkt;
	r->flags = xnet;
	bpf_get_stack(ctx, r->stack, sizeof(r->stack), 0);
	bpf_ringbuf_submit(r, 0);
}

SEC("kprobe/skb_scrub_packet")
int BPF_KPROBE(lab_on_scrub, struct sk_buff *skb, bool xnet)
{
	lab_scrubbed(ctx, skb, xnet);
	return 0;
}

/* The lab kernel's tunnels and bpf_redirect_peer() say why they scrub. */
SEC("kprobe/skb_scrub_packet_reason")
int BPF_KPROBE(lab_on_scrub_reason, struct sk_buff *skb, bool xnet)
{
	lab_scrubbed(ctx, skb, xnet);
	return 0;
}

static __always_inline void lab_freed(void *ctx, struct sk_buff *skb)
{
	struct lab_record *r;
	__u32 *pkt = lab_tracked(skb);
	__u64 key = (__u64)(unsigned long)skb;

	if (!pkt)
		return;
	r = lab_reserve(LAB_K_FREE, skb);
	if (r) {
		r->packet = *pkt;
		bpf_get_stack(ctx, r->stack, sizeof(r->stack), 0);
		bpf_ringbuf_submit(r, 0);
	}
	bpf_map_delete_elem(&tracked, &key);
}

/* Most frees release the head state (extensions included) first ... */
SEC("kprobe/skb_release_head_state")
int BPF_KPROBE(lab_on_release, struct sk_buff *skb)
{
	lab_freed(ctx, skb);
	return 0;
}

/* ... stateless ones (a UDP socket's consumed skbs) go straight here. */
SEC("kprobe/kfree_skbmem")
int BPF_KPROBE(lab_on_kfree_skbmem, struct sk_buff *skb)
{
	lab_freed(ctx, skb);
	return 0;
}

SEC("kprobe/bpf_skb_storage_free")
int BPF_KPROBE(lab_on_storage_free, struct skb_ext_bpf_storage *ext)
{
	struct lab_record *r;

	if (!lab_chunk_holds(ext))
		return 0;
	r = lab_reserve_blank(LAB_K_STORAGE_FREE);
	if (!r)
		return 0;
	r->ext = (__u64)(unsigned long)ext;
	bpf_get_stack(ctx, r->stack, sizeof(r->stack), 0);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

/* A map's element allocated on an skb: the first get with CREATE. */
SEC("kprobe/bpf_selem_alloc")
int BPF_KPROBE(lab_on_storage_alloc, struct bpf_local_storage_map *smap, void *owner)
{
	struct lab_record *r;

	if (BPF_CORE_READ(smap, map.map_type) != BPF_MAP_TYPE_SKB_STORAGE)
		return 0;
	r = lab_reserve_blank(LAB_K_STORAGE_ALLOC);
	if (!r)
		return 0;
	r->ext = (__u64)(unsigned long)owner;
	bpf_probe_read_kernel_str(r->ifname, sizeof(r->ifname), smap->map.name);
	bpf_get_stack(ctx, r->stack, sizeof(r->stack), 0);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

static __always_inline void lab_stash_clean(struct sk_buff *skb, __u32 hook)
{
	__u64 key = (__u64)(unsigned long)skb;
	struct lab_value *v = bpf_map_lookup_elem(&stash, &key);
	struct lab_record *r;
	__u32 val;

	if (!v)
		return;
	val = v->token;
	bpf_map_delete_elem(&stash, &key);
	r = lab_reserve(LAB_K_STASH_CLEAN, skb);
	if (!r)
		return;
	r->hook = hook;
	r->packet = val;
	r->value[2] = val;
	bpf_ringbuf_submit(r, 0);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(lab_stash_kfree, struct sk_buff *skb)
{
	lab_stash_clean(skb, LAB_HOOK_KFREE_SKB);
	return 0;
}

SEC("tp_btf/consume_skb")
int BPF_PROG(lab_stash_consume, struct sk_buff *skb)
{
	lab_stash_clean(skb, LAB_HOOK_CONSUME_SKB);
	return 0;
}

/* ---- the lab kernel's bpf_skb_storage tracepoints ---------------------------------- */

static __always_inline struct lab_record *lab_tp_record(void *ctx, __u32 kind, struct sk_buff *skb,
							struct bpf_map *map)
{
	struct lab_record *r = skb ? lab_reserve(kind, skb) : lab_reserve_blank(kind);
	__u32 *pkt;

	if (!r)
		return NULL;
	if (skb) {
		pkt = lab_tracked(skb);
		if (pkt)
			r->packet = *pkt;
	}
	bpf_probe_read_kernel_str(r->ifname, sizeof(r->ifname), map->name);
	bpf_get_stack(ctx, r->stack, sizeof(r->stack), 0);
	return r;
}

SEC("tp_btf/skb_storage_create")
int BPF_PROG(lab_tp_create, struct sk_buff *skb, struct bpf_map *map)
{
	struct lab_record *r = lab_tp_record(ctx, LAB_K_TP_CREATE, skb, map);

	if (r)
		bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("tp_btf/skb_storage_clone")
int BPF_PROG(lab_tp_clone, struct sk_buff *skb, struct sk_buff *clone, struct bpf_map *map)
{
	struct lab_record *r = lab_tp_record(ctx, LAB_K_TP_CLONE, clone, map);
	__u32 *pkt;

	if (!r)
		return 0;
	r->other = (__u64)(unsigned long)skb;
	pkt = lab_tracked(skb);
	if (pkt)
		r->packet = *pkt;
	bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("tp_btf/skb_storage_scrub")
int BPF_PROG(lab_tp_scrub, struct sk_buff *skb, struct bpf_map *map, void *location, bool xnet,
	     enum skb_scrub_reason reason, bool kept)
{
	struct lab_record *r = lab_tp_record(ctx, LAB_K_TP_SCRUB, skb, map);

	if (!r)
		return 0;
	r->other = (__u64)(unsigned long)location;
	r->flags = (__u32)xnet | ((__u32)reason << 1) | ((__u32)kept << 8);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("tp_btf/skb_storage_free")
int BPF_PROG(lab_tp_free, struct skb_ext_bpf_storage *owner, struct bpf_map *map, struct sk_buff *skb)
{
	struct lab_record *r = lab_tp_record(ctx, LAB_K_TP_FREE, skb, map);

	if (!r)
		return 0;
	r->ext = (__u64)(unsigned long)owner;
	bpf_ringbuf_submit(r, 0);
	return 0;
}

/* ---- the metadata buffer's tracepoints (bpf_skb_ext:*, kernel patch 0011) ---------- */

static __always_inline struct lab_record *lab_meta_record(void *ctx, __u32 kind, struct sk_buff *skb,
							  const void *block)
{
	__u32 *pkt = lab_tracked(skb);
	__u64 b = (__u64)(unsigned long)block;
	struct lab_record *r;

	if (!pkt)
		return NULL;
	r = lab_reserve(kind, skb);
	if (!r)
		return NULL;
	r->packet = *pkt;
	r->ext = b;
	bpf_map_update_elem(&meta_blocks, &b, pkt, BPF_ANY);
	return r;
}

SEC("tp_btf/skb_ext_bpf_create")
int BPF_PROG(lab_meta_create, struct sk_buff *skb, const void *block)
{
	struct lab_record *r = lab_meta_record(ctx, LAB_K_META_CREATE, skb, block);

	if (r)
		bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("tp_btf/skb_ext_bpf_copy")
int BPF_PROG(lab_meta_copy, struct sk_buff *skb, const void *from, const void *to)
{
	struct lab_record *r = lab_meta_record(ctx, LAB_K_META_COPY, skb, to);

	if (!r)
		return 0;
	r->other = (__u64)(unsigned long)from;
	bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("tp_btf/skb_ext_bpf_scrub")
int BPF_PROG(lab_meta_scrub, struct sk_buff *skb, const void *from, const void *to, void *location,
	     bool xnet, enum skb_scrub_reason reason)
{
	struct lab_record *r = lab_meta_record(ctx, LAB_K_META_SCRUB, skb, to);

	if (!r)
		return 0;
	r->other = (__u64)(unsigned long)location;
	r->stack[0] = (__u64)(unsigned long)from;
	r->flags = (__u32)xnet | ((__u32)reason << 1);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("tp_btf/skb_ext_bpf_free")
int BPF_PROG(lab_meta_free, const void *block)
{
	__u64 b = (__u64)(unsigned long)block;
	struct lab_record *r;
	__u32 *pkt = bpf_map_lookup_elem(&meta_blocks, &b);

	if (!pkt)
		return 0;
	r = lab_reserve_blank(LAB_K_META_FREE);
	if (r) {
		r->packet = *pkt;
		r->ext = b;
		bpf_get_stack(ctx, r->stack, sizeof(r->stack), 0);
		bpf_ringbuf_submit(r, 0);
	}
	bpf_map_delete_elem(&meta_blocks, &b);
	return 0;
}

/* ---- the gated skb tracepoints (skb_gated:*, kernel patch 0012) -------------------- */

/* The side stash on gated tracepoints: the entry goes to the copy ... */
SEC("tp_btf/skb_copy")
int BPF_PROG(lab_gated_copy, struct sk_buff *dst, struct sk_buff *src)
{
	__u64 from = (__u64)(unsigned long)src, to = (__u64)(unsigned long)dst;
	struct lab_value *v = bpf_map_lookup_elem(&gated, &from);
	__u32 *pkt = lab_tracked(src);
	struct lab_record *r;
	__u32 p;

	if (v)
		bpf_map_update_elem(&gated, &to, v, BPF_ANY);
	if (!pkt)
		return 0;
	p = *pkt;
	bpf_map_update_elem(&tracked, &to, &p, BPF_ANY);
	r = lab_reserve(LAB_K_GATED_COPY, dst);
	if (!r)
		return 0;
	r->packet = p;
	r->other = from;
	if (v) {
		r->state[4] = LAB_PRESENT;
		r->value[4] = v->token;
	}
	bpf_get_stack(ctx, r->stack, sizeof(r->stack), 0);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("tp_btf/skb_scrub")
int BPF_PROG(lab_gated_scrub, struct sk_buff *skb, bool xnet, int reason, void *location)
{
	__u32 *pkt = lab_tracked(skb);
	struct lab_record *r;

	if (!pkt)
		return 0;
	r = lab_reserve(LAB_K_GATED_SCRUB, skb);
	if (!r)
		return 0;
	r->packet = *pkt;
	r->other = (__u64)(unsigned long)location;
	r->flags = (__u32)xnet | ((__u32)reason << 1);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

/* ... and is reaped when the skb is freed. */
SEC("tp_btf/skb_free")
int BPF_PROG(lab_gated_free, struct sk_buff *skb)
{
	__u64 key = (__u64)(unsigned long)skb;
	struct lab_value *v = bpf_map_lookup_elem(&gated, &key);
	__u32 *pkt = lab_tracked(skb);
	struct lab_record *r;

	r = lab_reserve(LAB_K_GATED_FREE, skb);
	if (r) {
		r->packet = pkt ? *pkt : (v ? v->token : 0);
		if (v) {
			r->state[4] = LAB_PRESENT;
			r->value[4] = v->token;
		}
		bpf_get_stack(ctx, r->stack, sizeof(r->stack), 0);
		bpf_ringbuf_submit(r, 0);
	}
	if (v)
		bpf_map_delete_elem(&gated, &key);
	return 0;
}
