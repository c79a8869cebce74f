// SPDX-License-Identifier: GPL-2.0
/* The kfunc API, one rule per program, each run on a fresh skb that
 * BPF_PROG_TEST_RUN builds from a test packet (tests/lab/test_api.py).
 * Every program leaves its findings in the global `res`.
 */
#include "lab_observe.h"

char LICENSE[] SEC("license") = "GPL";

SKB_STORAGE_MAP(storage, struct lab_value);

SKB_STORAGE_MAP(other, struct lab_value);

struct api_res {
	__s64 v[8];
} res;

/* Proves: on an skb that never had storage, get without F_CREATE is NULL. */
SEC("tc")
int get_without_create(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);

	res.v[0] = bpf_skb_storage_get(&storage, skb, NULL, 0, 0) == NULL;
	res.v[1] = 1; /* ran */
	return TC_ACT_OK;
}

/* Proves: F_CREATE with a NULL value gives a zero-filled value. */
SEC("tc")
int create_zero_fills(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct lab_value *v;

	v = bpf_skb_storage_get(&storage, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	res.v[0] = v != NULL;
	if (v) {
		res.v[1] = v->token;
		res.v[2] = v->writes;
		res.v[3] = v->t_ns;
	}
	return TC_ACT_OK;
}

/* Proves: F_CREATE copies the initial value in (the token comes from the
 * packet, so it changes from run to run).
 */
SEC("tc")
int create_copies_init(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct lab_value init = { .token = lab_packet_token(ctx), .writes = 7, .t_ns = 99 };
	struct lab_value *v;

	v = bpf_skb_storage_get(&storage, skb, &init, sizeof(init), BPF_LOCAL_STORAGE_GET_F_CREATE);
	res.v[0] = v != NULL;
	if (v) {
		res.v[1] = v->token;
		res.v[2] = v->writes;
		res.v[3] = v->t_ns;
	}
	return TC_ACT_OK;
}

/* Proves: what one get writes, a later get (without F_CREATE) reads back,
 * through the same value.
 */
SEC("tc")
int write_then_read(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct lab_value *v, *again;

	v = bpf_skb_storage_get(&storage, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v)
		return TC_ACT_OK;
	v->token = lab_packet_token(ctx);
	v->writes = 3;
	again = bpf_skb_storage_get(&storage, skb, NULL, 0, 0);
	res.v[0] = again != NULL;
	if (again) {
		res.v[1] = again->token;
		res.v[2] = again->writes;
		res.v[3] = again == v;
	}
	return TC_ACT_OK;
}

/* Proves: delete answers 0, then -ENOENT, and the storage is gone. */
SEC("tc")
int delete_twice(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);

	if (!bpf_skb_storage_get(&storage, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return TC_ACT_OK;
	res.v[0] = bpf_skb_storage_delete(&storage, skb);
	res.v[1] = bpf_skb_storage_delete(&storage, skb);
	res.v[2] = bpf_skb_storage_get(&storage, skb, NULL, 0, 0) == NULL;
	/* and the chunk left behind can be used again */
	res.v[3] = bpf_skb_storage_get(&storage, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE) != NULL;
	return TC_ACT_OK;
}

/* Proves: a flag bit other than F_CREATE makes get return NULL, and
 * creates nothing even when F_CREATE is among the bits.
 */
SEC("tc")
int unknown_flag(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);

	res.v[0] = bpf_skb_storage_get(&storage, skb, NULL, 0, 2) == NULL;
	res.v[1] = bpf_skb_storage_get(&storage, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE | 4) == NULL;
	res.v[2] = bpf_skb_storage_delete(&storage, skb);
	return TC_ACT_OK;
}

/* Proves: two maps are two independent slots on one skb; deleting one
 * leaves the other.
 */
SEC("tc")
int two_maps(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct lab_value *a, *b;

	a = bpf_skb_storage_get(&storage, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	b = bpf_skb_storage_get(&other, skb, NULL, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!a || !b)
		return TC_ACT_OK;
	a->token = 1;
	b->token = 2;
	res.v[0] = bpf_skb_storage_delete(&storage, skb);
	b = bpf_skb_storage_get(&other, skb, NULL, 0, 0);
	res.v[1] = b ? b->token : -1;
	res.v[2] = bpf_skb_storage_get(&storage, skb, NULL, 0, 0) == NULL;
	return TC_ACT_OK;
}
