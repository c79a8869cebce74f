// SPDX-License-Identifier: GPL-2.0
/* What per-packet data costs: one writer and one reader per design, as
 * small as the design allows, for labkit.bench to time with the kernel's
 * own BPF statistics (kernel.bpf_stats_enabled: run_time_ns / run_cnt).
 *
 * Writers run at tc ingress of the receiving veth, readers at cgroup_skb
 * ingress of the receiving socket (data_meta: XDP writes, tc reads). Only
 * benchmark traffic reaches those hooks, so no program looks for a token.
 * Every program counts what it saw, so a design that silently does nothing
 * shows up as a count that does not match the packets sent.
 *
 * The calibration programs at the end are the tc floor plus exactly N
 * instructions: in a lab VM that counts instructions (Lab(clock="icount")),
 * they must cost N more per run than the floor.
 */
#include "skb_storage.h"
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

/* What each program saw: [0] runs, [1] found its data (readers), [2] failed. */
enum { B_FLOOR_W, B_FLOOR_R, B_FLOOR_X, B_STORAGE_W, B_STORAGE_R, B_STASH_W, B_STASH_R, B_STASH_CLEAN,
       B_MARK_W, B_MARK_R, B_META_W, B_META_R, B_CAL16_W, B_CAL64_W, B_NUM };

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

SEC("cgroup_skb/ingress")
int bench_stash_r(struct __sk_buff *ctx)
{
	struct bench_count *c = count(B_STASH_R);
	__u64 key = (__u64)(unsigned long)bpf_cast_to_kern_ctx(ctx);
	struct bench_value *v;

	if (!c)
		return 1;
	c->runs++;
	v = bpf_map_lookup_elem(&bench_stash, &key);
	if (v && v->seq)
		c->found++;
	return 1;
}

/* Without it the stash fills up with the addresses of freed skbs. It runs
 * for every skb the kernel frees, not only benchmark packets: that is the
 * design's cost.
 */
static __always_inline void stash_clean(struct sk_buff *skb)
{
	struct bench_count *c = count(B_STASH_CLEAN);
	__u64 key = (__u64)(unsigned long)skb;

	if (!c)
		return;
	c->runs++;
	if (!bpf_map_delete_elem(&bench_stash, &key))
		c->found++;
}

SEC("tp_btf/consume_skb")
int BPF_PROG(bench_stash_clean, struct sk_buff *skb)
{
	stash_clean(skb);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(bench_stash_clean_drop, struct sk_buff *skb)
{
	stash_clean(skb);
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
