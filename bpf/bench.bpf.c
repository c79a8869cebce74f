// SPDX-License-Identifier: GPL-2.0
/* What per-packet data costs: one writer and one reader per design, as
 * small as the design allows, for labkit.bench.storage to time with the kernel's
 * own BPF statistics (kernel.bpf_stats_enabled: run_time_ns / run_cnt).
 *
 * Writers run at tc ingress of the receiving veth, readers at cgroup_skb
 * ingress of the receiving socket (data_meta: XDP writes, tc reads). Only
 * benchmark traffic reaches those hooks, so no program looks for a token.
 * Every program counts what it saw, so a design that silently does nothing
 * shows up as a count that does not match the packets sent.
 *
 * What came after the RFC (kernel patches 0011, 0012) is timed the same way:
 * the skb's BPF metadata buffer (one dynptr open and a slice, as skb
 * storage's get returns a pointer), and the stash on gated tracepoints
 * (bpf_trace_skb() arms the skb, the hash is reaped at skb_gated:skb_free
 * for armed skbs only and copied at skb_gated:skb_copy for their clones).
 *
 * The calibration programs at the end are the tc floor plus exactly N
 * instructions: in a lab VM that counts instructions (Lab(clock="icount")),
 * they must cost N more per run than the floor.
 */
#include "skb_storage.h"
#include "skb_ext.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define XDP_PASS 2

struct bench_value {
	__u64 stamp;
	__u32 seq;
	__u32 pad;
};

SKB_STORAGE_MAP(bench_storage, struct bench_value);

/* The skb-pointer-keyed side stash: the design that needs no kernel change. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct bench_value);
} bench_stash SEC(".maps");

/* The stash on the gated tracepoints: the same hash, reaped for armed skbs only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct bench_value);
} bench_gated SEC(".maps");

/* What each program saw: [0] runs, [1] found its data (readers), [2] failed. */
enum { B_FLOOR_W, B_FLOOR_R, B_FLOOR_X, B_STORAGE_W, B_STORAGE_R, B_STASH_W, B_STASH_R, B_STASH_CLEAN,
       B_MARK_W, B_MARK_R, B_META_W, B_META_R, B_CAL16_W, B_CAL64_W, B_EXT_W, B_EXT_R, B_GATED_W,
       B_GATED_R, B_GATED_FREE, B_GATED_COPY, B_GATED_WC, B_NUM };

struct bench_count {
	__u64 runs;
	__u64 found;
	__u64 failed;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, B_NUM);
	__type(key, __u32);
	__type(value, struct bench_count);
} counts SEC(".maps");

#define BENCH_MARK 0x5eed

static __always_inline struct bench_count *count(__u32 i)
{
	return bpf_map_lookup_elem(&counts, &i);
}

/* ---- the floor: a program that only counts -------------------------------------- */

SEC("tc")
int bench_floor_w(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_FLOOR_W);

	if (c)
		c->runs++;
	return TC_ACT_OK;
}

SEC("cgroup_skb/ingress")
int bench_floor_r(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_FLOOR_R);

	if (c)
		c->runs++;
	return 1;
}

SEC("xdp")
int bench_floor_x(struct xdp_md *ctx)
{
	struct bench_count *c = count(B_FLOOR_X);

	if (c)
		c->runs++;
	return XDP_PASS;
}

/* ---- skb local storage: create+write at tc, lookup+read at cgroup_skb ---------- */

SEC("tc")
int bench_storage_w(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_STORAGE_W);
	struct bench_value *v;

	if (!c)
		return TC_ACT_OK;
	c->runs++;
	v = bpf_skb_storage_get(&bench_storage, bpf_cast_to_kern_ctx(ctx), NULL, 0,
				BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v) {
		c->failed++;
		return TC_ACT_OK;
	}
	v->stamp = ctx->tstamp;
	v->seq = c->runs;
	return TC_ACT_OK;
}

SEC("cgroup_skb/ingress")
int bench_storage_r(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_STORAGE_R);
	struct bench_value *v;

	if (!c)
		return 1;
	c->runs++;
	v = bpf_skb_storage_get(&bench_storage, bpf_cast_to_kern_ctx(ctx), NULL, 0, 0);
	if (v && v->seq)
		c->found++;
	return 1;
}

/* ---- the side stash: a hash keyed by the skb's address, cleaned up at free ------ */

SEC("tc")
int bench_stash_w(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_STASH_W);
	__u64 key = (__u64)(unsigned long)bpf_cast_to_kern_ctx(ctx);
	struct bench_value v = {};

	if (!c)
		return TC_ACT_OK;
	c->runs++;
	v.stamp = ctx->tstamp;
	v.seq = c->runs;
	if (bpf_map_update_elem(&bench_stash, &key, &v, BPF_ANY))
		c->failed++;
	return TC_ACT_OK;
}

/* A hash keyed by the skb's address, read (the side stash, the gated stash) ... */
static __always_inline int hash_read(void *map, __u32 i, struct __sk_buff *ctx)
{
	struct bench_count *c = count(i);
	__u64 key = (__u64)(unsigned long)bpf_cast_to_kern_ctx(ctx);
	struct bench_value *v;

	if (!c)
		return 1;
	c->runs++;
	v = bpf_map_lookup_elem(map, &key);
	if (v && v->seq)
		c->found++;
	return 1;
}

/* ... and its entry deleted when the skb goes. */
static __always_inline void hash_reap(void *map, __u32 i, struct sk_buff *skb)
{
	struct bench_count *c = count(i);
	__u64 key = (__u64)(unsigned long)skb;

	if (!c)
		return;
	c->runs++;
	if (!bpf_map_delete_elem(map, &key))
		c->found++;
}

SEC("cgroup_skb/ingress")
int bench_stash_r(struct __sk_buff *ctx)
{
	return hash_read(&bench_stash, B_STASH_R, ctx);
}

/* Without it the stash fills up with the addresses of freed skbs. It runs
 * for every skb the kernel frees, not only benchmark packets: that is the
 * design's cost.
 */
SEC("tp_btf/consume_skb")
int BPF_PROG(bench_stash_clean, struct sk_buff *skb)
{
	hash_reap(&bench_stash, B_STASH_CLEAN, skb);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(bench_stash_clean_drop, struct sk_buff *skb)
{
	hash_reap(&bench_stash, B_STASH_CLEAN, skb);
	return 0;
}

/* ---- skb->mark: 32 bits, shared with everything else that uses it -------------- */

SEC("tc")
int bench_mark_w(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_MARK_W);

	if (c)
		c->runs++;
	ctx->mark = BENCH_MARK;
	return TC_ACT_OK;
}

SEC("cgroup_skb/ingress")
int bench_mark_r(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_MARK_R);

	if (!c)
		return 1;
	c->runs++;
	if (ctx->mark == BENCH_MARK)
		c->found++;
	return 1;
}

/* ---- data_meta: XDP writes in front of the packet, tc reads it ------------------ */

SEC("xdp")
int bench_meta_w(struct xdp_md *ctx)
{
	struct bench_count *c = count(B_META_W);
	struct bench_value *m;
	void *data;

	if (!c)
		return XDP_PASS;
	c->runs++;
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*m))) {
		c->failed++;
		return XDP_PASS;
	}
	data = (void *)(long)ctx->data;
	m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > data) {
		c->failed++;
		return XDP_PASS;
	}
	m->stamp = 1;
	m->seq = c->runs;
	return XDP_PASS;
}

SEC("tc")
int bench_meta_r(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_META_R);
	struct bench_value *m = (void *)(long)ctx->data_meta;

	if (!c)
		return TC_ACT_OK;
	c->runs++;
	if ((void *)(m + 1) <= (void *)(long)ctx->data && m->seq)
		c->found++;
	return TC_ACT_OK;
}

/* ---- the metadata buffer: one per skb, in its extension block (patch 0011) ------ */

SEC("tc")
int bench_ext_w(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_EXT_W);
	struct bench_value *v;
	struct bpf_dynptr d;

	if (!c)
		return TC_ACT_OK;
	c->runs++;
	if (bpf_dynptr_from_skb_ext(ctx, 0, BPF_SKB_EXT_F_CREATE, &d)) {
		c->failed++;
		return TC_ACT_OK;
	}
	v = bpf_dynptr_slice_rdwr(&d, 0, NULL, sizeof(*v));
	if (!v) {
		c->failed++;
		return TC_ACT_OK;
	}
	v->stamp = ctx->tstamp;
	v->seq = c->runs;
	return TC_ACT_OK;
}

SEC("cgroup_skb/ingress")
int bench_ext_r(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_EXT_R);
	struct bench_value *v;
	struct bpf_dynptr d;

	if (!c)
		return 1;
	c->runs++;
	if (bpf_dynptr_from_skb_ext(ctx, 0, 0, &d))
		return 1;
	v = bpf_dynptr_slice(&d, 0, NULL, sizeof(*v));
	if (v && v->seq)
		c->found++;
	return 1;
}

/* ---- gated tracepoints: arm the skb, stash by address, reap at its free (0012) -- */

static __always_inline int gated_write(struct __sk_buff *ctx, struct bench_count *c)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	__u64 key = (__u64)(unsigned long)skb;
	struct bench_value v = {};

	c->runs++;
	v.stamp = ctx->tstamp;
	v.seq = c->runs;
	if (bpf_trace_skb(skb, 0) || bpf_map_update_elem(&bench_gated, &key, &v, BPF_ANY))
		c->failed++;
	return TC_ACT_OK;
}

SEC("tc")
int bench_gated_w(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_GATED_W);

	return c ? gated_write(ctx, c) : TC_ACT_OK;
}

/* The same, then a clone of the packet sent back out of the device it came in
 * on (dropped on the other side, which does not forward): the run that times
 * skb_gated:skb_copy, once per clone. */
SEC("tc")
int bench_gated_wc(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_GATED_WC);

	if (!c)
		return TC_ACT_OK;
	gated_write(ctx, c);
	bpf_clone_redirect(ctx, ctx->ifindex, 0);
	return TC_ACT_OK;
}

SEC("cgroup_skb/ingress")
int bench_gated_r(struct __sk_buff *ctx)
{
	return hash_read(&bench_gated, B_GATED_R, ctx);
}

/* Runs for armed skbs only, where the side stash's cleanup runs for every free. */
SEC("tp_btf/skb_free")
int BPF_PROG(bench_gated_free, struct sk_buff *skb)
{
	hash_reap(&bench_gated, B_GATED_FREE, skb);
	return 0;
}

SEC("tp_btf/skb_copy")
int BPF_PROG(bench_gated_copy, struct sk_buff *dst, struct sk_buff *src)
{
	struct bench_count *c = count(B_GATED_COPY);
	__u64 from = (__u64)(unsigned long)src, to = (__u64)(unsigned long)dst;
	struct bench_value *v;

	if (!c)
		return 0;
	c->runs++;
	v = bpf_map_lookup_elem(&bench_gated, &from);
	if (!v)
		return 0;
	c->found++;
	if (bpf_map_update_elem(&bench_gated, &to, v, BPF_ANY))
		c->failed++;
	return 0;
}

/* ---- calibration: the tc floor plus exactly N instructions ---------------------- */

/* N moves of an immediate into r0, before anything else, where r0 holds nothing
 * the compiler needs (so it adds no code around them; llvm-objdump shows the
 * floor's instructions plus these N). The verifier keeps them (it removes only
 * unreachable code and jumps to the next instruction) and the x86 JIT turns each
 * into one instruction (mov eax, 1). The count index differs from the floor's
 * only in its value.
 */
#define BENCH_CAL(n)								\
SEC("tc")									\
int bench_cal##n##_w(struct __sk_buff *ctx)					\
{										\
	struct bench_count *c;							\
										\
	asm volatile(".rept " #n "\n\tr0 = 1\n\t.endr" ::: "r0");		\
	c = count(B_CAL##n##_W);						\
	if (c)									\
		c->runs++;							\
	return TC_ACT_OK;							\
}

BENCH_CAL(16)
BENCH_CAL(64)

/* ---- the inlined lookup's own cost: a bracket probe ------------------------------ */

/* bpf_skb_storage_get() with flags 0 on an skb whose element is kept in its
 * block: the hit path of the lookup the verifier inlines (kernel patch 0010).
 * Three brackets of bpf_ktime_get_ns(), which under icount reads a clock
 * that moves 1 ns per guest instruction, each "t = now; BODY; now - t":
 * around nothing, around the call's argument set-up alone, and around the
 * set-up and the lookup. Written in assembly so that the compiler puts
 * nothing else inside them. labkit/bench/probe.py takes the differences:
 * the whole call site (lookup - empty) and the inlined sequence alone
 * (lookup - setup: both save a register after the set-up).
 */
struct {
	__u64 empty, setup, lookup, found;
} probe SEC(".data.probe");

SEC("tc")
__attribute__((naked)) int bench_probe_lookup(void)
{
	asm volatile (
	"call %[bpf_cast_to_kern_ctx];"
	"r6 = r0;"
	/* the element, kept in the block */
	"r1 = %[map] ll; r2 = r6; r3 = 0; r4 = 0; r5 = 1;"
	"call %[bpf_skb_storage_get];"
	"if r0 == 0 goto 1f;"
	/* empty */
	"call %[bpf_ktime_get_ns]; r7 = r0;"
	"call %[bpf_ktime_get_ns]; r0 -= r7;"
	"r1 = %[probe] ll; *(u64 *)(r1 + 0) = r0;"
	/* the argument set-up */
	"call %[bpf_ktime_get_ns]; r7 = r0;"
	"r1 = %[map] ll; r2 = r6; r3 = 0; r4 = 0; r5 = 0; r8 = r0;"
	"call %[bpf_ktime_get_ns]; r0 -= r7;"
	"r1 = %[probe] ll; *(u64 *)(r1 + 8) = r0;"
	/* the set-up and the lookup */
	"call %[bpf_ktime_get_ns]; r7 = r0;"
	"r1 = %[map] ll; r2 = r6; r3 = 0; r4 = 0; r5 = 0;"
	"call %[bpf_skb_storage_get]; r8 = r0;"
	"call %[bpf_ktime_get_ns]; r0 -= r7;"
	"r1 = %[probe] ll; *(u64 *)(r1 + 16) = r0;"
	"r0 = 0;"
	"if r8 == 0 goto 2f;"
	"r0 = 1;"
	"2:"
	"*(u64 *)(r1 + 24) = r0;"
	"1:"
	"r0 = 0;"
	"exit;"
	:
	: [bpf_cast_to_kern_ctx] "i"(bpf_cast_to_kern_ctx),
	  [bpf_skb_storage_get] "i"(bpf_skb_storage_get),
	  [bpf_ktime_get_ns] "i"(bpf_ktime_get_ns),
	  [map] "i"(&bench_storage),
	  [probe] "i"(&probe)
	: "memory");
}
