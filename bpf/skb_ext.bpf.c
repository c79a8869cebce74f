// SPDX-License-Identifier: GPL-2.0
/* Programs for the BPF metadata buffer (kernel patch 0011) and the gated
 * skb tracepoints (patch 0012): tests/lab/test_skb_ext.py and
 * tests/lab/test_gated.py. Written the way the proposal's selftests call
 * the kfunc: size 0, BPF_SKB_EXT_F_CREATE, a slice of the result.
 * Results go to `res`; a slot is 0 until its program ran.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "lab_token.h"
#include "skb_storage.h"
#include "skb_ext.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__s64 v[24];	/* 16-23: the bpf_skb_ext tracepoints' counts */
	__u64 skb[16];
	__u32 token;	/* the test's packets */
	__u32 target;	/* bpf_clone_redirect()'s device */
	__u32 cow;	/* ext_clone_side writes the clone's buffer */
	__u32 pad;
} res;

#define SKB(ctx) ((__u64)bpf_cast_to_kern_ctx(ctx))

static __always_inline bool ours(struct __sk_buff *ctx)
{
	return res.token && lab_packet_token(ctx) == res.token;
}

/* Open with F_CREATE and write the packet's token at offset 0 through a
 * writable slice: slot 0 says 1, or the error.
 */
static __always_inline void write_token(struct __sk_buff *ctx, int slot)
{
	struct bpf_dynptr d;
	__u32 *p;
	int err;

	err = bpf_dynptr_from_skb_ext(ctx, 0, BPF_SKB_EXT_F_CREATE, &d);
	if (err) {
		res.v[slot] = err;
		return;
	}
	p = bpf_dynptr_slice_rdwr(&d, 0, NULL, sizeof(*p));
	if (!p) {
		res.v[slot] = -1000;
		return;
	}
	*p = res.token;
	res.v[slot] = 1;
	res.skb[slot] = SKB(ctx);
}

/* Read the first word read-only: the value, or the error (negative). */
static __always_inline void read_token(struct __sk_buff *ctx, int slot)
{
	struct bpf_dynptr d;
	__u32 *p;
	int err;

	err = bpf_dynptr_from_skb_ext(ctx, 0, 0, &d);
	if (err) {
		res.v[slot] = err;
	} else {
		p = bpf_dynptr_slice(&d, 0, NULL, sizeof(*p));
		res.v[slot] = p ? *p : -1000;
	}
	res.skb[slot] = SKB(ctx);
}

SEC("tc")
int ext_write(struct __sk_buff *ctx)
{
	if (ours(ctx))
		write_token(ctx, 0);
	return TC_ACT_OK;
}

/* Also notes how many scrubs kept a buffer before it (slot 6) and the
 * last one's reason (slot 7).
 */
SEC("tc")
int ext_read(struct __sk_buff *ctx)
{
	if (!ours(ctx))
		return TC_ACT_OK;
	read_token(ctx, 1);
	res.v[6] = res.v[18];
	res.v[7] = res.v[19];
	return TC_ACT_OK;
}

/* ---- the API on one skb (BPF_PROG_TEST_RUN) ------------------------------ */

/* No buffer yet: a read-only open fails with -ENOENT. */
SEC("tc")
int ext_enoent(struct __sk_buff *ctx)
{
	struct bpf_dynptr d;

	res.v[0] = bpf_dynptr_from_skb_ext(ctx, 0, 0, &d);
	res.v[1] = bpf_dynptr_read(&res.v[2], 8, &d, 0, 0);
	return 0;
}

/* Create: zero-filled, the whole buffer, writable; reopened without the
 * flag: the value written, read-only (writes refused).
 */
SEC("tc")
int ext_create(struct __sk_buff *ctx)
{
	__u64 word = 0, value = 0x1234abcd5678ef01ULL;
	struct bpf_dynptr d, ro;

	res.v[0] = bpf_dynptr_from_skb_ext(ctx, 0, BPF_SKB_EXT_F_CREATE, &d);
	res.v[1] = bpf_dynptr_size(&d);
	res.v[2] = bpf_dynptr_is_rdonly(&d);
	word = 1;
	bpf_dynptr_read(&word, sizeof(word), &d, 56, 0);
	res.v[3] = word;
	res.v[4] = bpf_dynptr_write(&d, 8, &value, sizeof(value), 0);

	res.v[5] = bpf_dynptr_from_skb_ext(ctx, 0, 0, &ro);
	res.v[6] = bpf_dynptr_is_rdonly(&ro);
	word = 0;
	bpf_dynptr_read(&word, sizeof(word), &ro, 8, 0);
	res.v[7] = word;
	res.v[8] = bpf_dynptr_write(&ro, 0, &value, sizeof(value), 0);
	res.v[9] = bpf_dynptr_slice_rdwr(&ro, 0, NULL, 8) == NULL;
	/* a second create finds the buffer as it is */
	res.v[10] = bpf_dynptr_from_skb_ext(ctx, 0, BPF_SKB_EXT_F_CREATE, &d);
	word = 0;
	bpf_dynptr_read(&word, sizeof(word), &d, 8, 0);
	res.v[11] = word;
	return 0;
}

/* A size: at most the buffer's; flags: known ones only. */
SEC("tc")
int ext_sizes(struct __sk_buff *ctx)
{
	struct bpf_dynptr d;

	res.v[0] = bpf_dynptr_from_skb_ext(ctx, 16, BPF_SKB_EXT_F_CREATE, &d);
	res.v[1] = bpf_dynptr_size(&d);
	res.v[2] = bpf_dynptr_from_skb_ext(ctx, 65, BPF_SKB_EXT_F_CREATE, &d);
	res.v[3] = bpf_dynptr_from_skb_ext(ctx, 64, 0, &d);
	res.v[4] = bpf_dynptr_size(&d);
	res.v[5] = bpf_dynptr_from_skb_ext(ctx, 0, 2, &d);
	res.v[6] = bpf_dynptr_size(&d);
	return 0;
}

/* ---- clones: shared, then copied on write -------------------------------- */

/* The original: create and write the token, clone to res.target (whose
 * egress runs ext_clone_side before bpf_clone_redirect() returns), then
 * read its own buffer again.
 */
SEC("tc")
int ext_clone_orig(struct __sk_buff *ctx)
{
	struct bpf_dynptr d;
	__u32 *p;

	if (!ours(ctx))
		return TC_ACT_OK;
	write_token(ctx, 0);
	res.v[2] = bpf_clone_redirect(ctx, res.target, 0);
	if (bpf_dynptr_from_skb_ext(ctx, 0, 0, &d))
		return TC_ACT_OK;
	p = bpf_dynptr_slice(&d, 0, NULL, sizeof(*p));
	res.v[3] = p ? *p : -1000;
	return TC_ACT_OK;
}

/* The clone: what it sees, and with res.cow its own write of ~token. */
SEC("tc")
int ext_clone_side(struct __sk_buff *ctx)
{
	struct bpf_dynptr d;
	__u32 *p;

	if (!ours(ctx))
		return TC_ACT_OK;
	read_token(ctx, 4);
	if (!res.cow)
		return TC_ACT_OK;
	res.v[5] = bpf_dynptr_from_skb_ext(ctx, 0, BPF_SKB_EXT_F_CREATE, &d);
	p = bpf_dynptr_slice_rdwr(&d, 0, NULL, sizeof(*p));
	if (p)
		*p = ~res.token;
	p = bpf_dynptr_slice(&d, 0, NULL, sizeof(*p));
	res.v[6] = p ? *p : -1000;
	return TC_ACT_OK;
}

/* ---- the kernel's own account: bpf_skb_ext tracepoints -------------------- */

SEC("tp_btf/skb_ext_bpf_create")
int BPF_PROG(ev_create, struct sk_buff *skb, const void *block)
{
	__sync_fetch_and_add(&res.v[16], 1);
	return 0;
}

SEC("tp_btf/skb_ext_bpf_copy")
int BPF_PROG(ev_copy, struct sk_buff *skb, const void *from, const void *to)
{
	__sync_fetch_and_add(&res.v[17], 1);
	res.skb[11] = (__u64)skb;
	return 0;
}

SEC("tp_btf/skb_ext_bpf_scrub")
int BPF_PROG(ev_scrub, struct sk_buff *skb, const void *from, const void *to,
	     void *location, bool xnet, enum skb_scrub_reason reason)
{
	__sync_fetch_and_add(&res.v[18], 1);
	res.v[19] = reason;
	res.v[20] = xnet;
	res.skb[12] = (__u64)skb;
	return 0;
}

SEC("tp_btf/skb_ext_bpf_free")
int BPF_PROG(ev_free, const void *block)
{
	__sync_fetch_and_add(&res.v[21], 1);
	return 0;
}

/* ---- beside skb local storage, on one skb --------------------------------- */

struct small {
	__u64 token;
};

SKB_STORAGE_MAP(both_map, struct small);

/* Both on the skb: an element with the token, the buffer with the token. */
SEC("tc")
int both_write(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct small *s;

	if (!ours(ctx))
		return TC_ACT_OK;
	s = bpf_skb_storage_get(&both_map, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (s)
		s->token = res.token;
	write_token(ctx, 0);
	res.v[2] = bpf_clone_redirect(ctx, res.target, 0);
	return TC_ACT_OK;
}

/* What a later hook sees of each: storage value (or -1 when refused or
 * absent) in slot base, buffer word in base + 1.
 */
static __always_inline void both_seen(struct __sk_buff *ctx, int base)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct small *s;

	s = bpf_skb_storage_get(&both_map, skb, NULL, 0, 0);
	res.v[base] = s ? (__s64)s->token : -1;
	read_token(ctx, base + 1);
}

SEC("tc")
int both_clone_side(struct __sk_buff *ctx)
{
	if (ours(ctx))
		both_seen(ctx, 3);
	return TC_ACT_OK;
}

SEC("tc")
int both_later(struct __sk_buff *ctx)
{
	if (ours(ctx))
		both_seen(ctx, 6);
	return TC_ACT_OK;
}

/* ---- what the verifier refuses, and the same programs without the fault --- */

/* F_CREATE from a tracing program. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(bad_create_in_tracing, struct sk_buff *skb)
{
	struct bpf_dynptr d;

	bpf_dynptr_from_skb_ext((struct __sk_buff *)skb, 0, BPF_SKB_EXT_F_CREATE, &d);
	return 0;
}

/* ... and from an LSM program. */
SEC("lsm/socket_sock_rcv_skb")
int BPF_PROG(bad_create_in_lsm, struct sock *sk, struct sk_buff *skb)
{
	struct bpf_dynptr d;

	bpf_dynptr_from_skb_ext((struct __sk_buff *)skb, 0, BPF_SKB_EXT_F_CREATE, &d);
	return 0;
}

/* Reading from them is allowed. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(ok_read_in_tracing, struct sk_buff *skb)
{
	struct bpf_dynptr d;
	__u32 *p;

	if (bpf_dynptr_from_skb_ext((struct __sk_buff *)skb, 0, 0, &d))
		return 0;
	p = bpf_dynptr_slice(&d, 0, NULL, sizeof(*p));
	if (p && res.token && *p == res.token)
		__sync_fetch_and_add(&res.v[9], 1);
	return 0;
}

SEC("lsm/socket_sock_rcv_skb")
int BPF_PROG(ok_read_in_lsm, struct sock *sk, struct sk_buff *skb)
{
	struct bpf_dynptr d;

	bpf_dynptr_from_skb_ext((struct __sk_buff *)skb, 0, 0, &d);
	return 0;
}

/* Flags the verifier cannot know. */
SEC("tc")
int bad_flags_not_constant(struct __sk_buff *ctx)
{
	struct bpf_dynptr d;

	bpf_dynptr_from_skb_ext(ctx, 0, ctx->mark & 1, &d);
	return TC_ACT_OK;
}

/* A slice used after bpf_clone_redirect(). */
SEC("tc")
int bad_slice_after_clone(struct __sk_buff *ctx)
{
	struct bpf_dynptr d;
	__u32 *p;

	if (bpf_dynptr_from_skb_ext(ctx, 0, BPF_SKB_EXT_F_CREATE, &d))
		return TC_ACT_OK;
	p = bpf_dynptr_slice_rdwr(&d, 0, NULL, sizeof(*p));
	if (!p)
		return TC_ACT_OK;
	bpf_clone_redirect(ctx, res.target, 0);
	*p = 1;
	return TC_ACT_OK;
}

SEC("tc")
int ok_slice_before_clone(struct __sk_buff *ctx)
{
	struct bpf_dynptr d;
	__u32 *p;

	if (bpf_dynptr_from_skb_ext(ctx, 0, BPF_SKB_EXT_F_CREATE, &d))
		return TC_ACT_OK;
	p = bpf_dynptr_slice_rdwr(&d, 0, NULL, sizeof(*p));
	if (!p)
		return TC_ACT_OK;
	*p = 1;
	bpf_clone_redirect(ctx, res.target, 0);
	return TC_ACT_OK;
}

/* A read-only slice used after the buffer was opened again with F_CREATE. */
SEC("tc")
int bad_slice_after_reopen(struct __sk_buff *ctx)
{
	struct bpf_dynptr d, w;
	__u32 *p;

	if (bpf_dynptr_from_skb_ext(ctx, 0, 0, &d))
		return TC_ACT_OK;
	p = bpf_dynptr_slice(&d, 0, NULL, sizeof(*p));
	if (!p)
		return TC_ACT_OK;
	bpf_dynptr_from_skb_ext(ctx, 0, BPF_SKB_EXT_F_CREATE, &w);
	res.v[0] = *p;
	return TC_ACT_OK;
}

SEC("tc")
int ok_slice_after_reopen_without_create(struct __sk_buff *ctx)
{
	struct bpf_dynptr d, w;
	__u32 *p;

	if (bpf_dynptr_from_skb_ext(ctx, 0, 0, &d))
		return TC_ACT_OK;
	p = bpf_dynptr_slice(&d, 0, NULL, sizeof(*p));
	if (!p)
		return TC_ACT_OK;
	bpf_dynptr_from_skb_ext(ctx, 0, 0, &w);
	res.v[0] = *p;
	return TC_ACT_OK;
}

/* ---- gated skb tracepoints (patch 0012) ------------------------------------ */

/* A side stash keyed by the skb's address. */
struct stash {
	__u64 token;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct stash);
} gated_stash SEC(".maps");

/* Arm the test's packets (res.cow: and stash the token); slot 0: the
 * kfunc's answer, skb[0] the skb.
 */
SEC("tc")
int gated_arm(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct stash s = { .token = res.token };
	__u64 key = (__u64)skb;

	if (!ours(ctx))
		return TC_ACT_OK;
	res.v[0] = bpf_trace_skb(skb, 0);
	res.skb[0] = key;
	if (res.cow)
		bpf_map_update_elem(&gated_stash, &key, &s, BPF_ANY);
	if (res.target)
		res.v[1] = bpf_clone_redirect(ctx, res.target, 0);
	return TC_ACT_OK;
}

/* A later hook: the stash's entry for this skb (token) or -1. */
SEC("tc")
int gated_later(struct __sk_buff *ctx)
{
	__u64 key = SKB(ctx);
	struct stash *s;

	if (!ours(ctx))
		return TC_ACT_OK;
	s = bpf_map_lookup_elem(&gated_stash, &key);
	res.v[2] = s ? (__s64)s->token : -1;
	res.skb[2] = key;
	return TC_ACT_OK;
}

SEC("tp_btf/skb_free")
int BPF_PROG(gated_free, struct sk_buff *skb)
{
	__u64 key = (__u64)skb;

	__sync_fetch_and_add(&res.v[8], 1);
	if (key == res.skb[0])
		__sync_fetch_and_add(&res.v[9], 1);
	bpf_map_delete_elem(&gated_stash, &key);
	return 0;
}

SEC("tp_btf/skb_copy")
int BPF_PROG(gated_copy, struct sk_buff *dst, struct sk_buff *src)
{
	__u64 from = (__u64)src, to = (__u64)dst;
	struct stash *s;

	__sync_fetch_and_add(&res.v[10], 1);
	res.skb[10] = from;
	res.skb[11] = to;
	s = bpf_map_lookup_elem(&gated_stash, &from);
	if (s)
		bpf_map_update_elem(&gated_stash, &to, s, BPF_ANY);
	return 0;
}

SEC("tp_btf/skb_scrub")
int BPF_PROG(gated_scrub, struct sk_buff *skb, bool xnet, int reason, void *location)
{
	__sync_fetch_and_add(&res.v[12], 1);
	res.v[13] = reason;
	res.skb[12] = (__u64)skb;
	return 0;
}

/* Arming from a tracing program is refused. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(bad_arm_in_tracing, struct sk_buff *skb)
{
	bpf_trace_skb(skb, 0);
	return 0;
}
