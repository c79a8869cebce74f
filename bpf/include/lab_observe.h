/* SPDX-License-Identifier: GPL-2.0 */
/* What every lab observer does: find the test token in the packet, look at
 * the storage without creating it, tell "absent" from "refused", report.
 */
#ifndef __LAB_OBSERVE_H
#define __LAB_OBSERVE_H

#include "skb_storage.h"
#include "lab_records.h"
#include "lab_token.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

static __always_inline void lab_emit(struct sk_buff *skb, __u32 hook, __u32 ifindex, __u32 state,
				     struct lab_value *v, int err, __u32 mark, __u32 pkt_token)
{
	struct lab_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return;
	e->skb = (__u64)(unsigned long)skb;
	e->t_ns = bpf_ktime_get_ns();
	e->hook = hook;
	e->ifindex = ifindex;
	e->state = state;
	e->token = v ? v->token : 0;
	e->writes = v ? v->writes : 0;
	e->err = err;
	e->mark = mark;
	e->pkt_token = pkt_token;
	bpf_ringbuf_submit(e, 0);
}

/* Report what map holds for skb, without creating anything. get returns
 * NULL both when there is no storage and when the skb shares its
 * extensions with a clone; delete tells the two apart (-ENOENT against
 * -EOPNOTSUPP) and, with nothing there, has nothing to delete.
 */
#define lab_observe_skb(map, skb, hook, ifindex, mark, pkt_token) ({		\
	struct sk_buff *__skb = (skb);						\
	struct lab_value *__v = bpf_skb_storage_get(map, __skb, NULL, 0, 0);	\
	int __err = 0;								\
	__u32 __state = LAB_PRESENT;						\
	if (!__v) {								\
		__err = bpf_skb_storage_delete(map, __skb);			\
		__state = __err == -EOPNOTSUPP ? LAB_REFUSED : LAB_ABSENT;	\
	}									\
	lab_emit(__skb, hook, ifindex, __state, __v, __err, mark, pkt_token);	\
	__state;								\
})

/* The same for programs whose context is a __sk_buff. */
#define lab_observe(map, ctx, hook, ifindex)					\
	lab_observe_skb(map, bpf_cast_to_kern_ctx(ctx), hook, ifindex,		\
			(ctx)->mark, lab_packet_token(ctx))

/* Create (or find) map's storage on the packet and stamp the token in. */
#define lab_write(map, ctx, hook, ifindex) ({					\
	struct sk_buff *__skb = bpf_cast_to_kern_ctx(ctx);			\
	__u32 __tok = lab_packet_token(ctx);					\
	struct lab_value __init = { .token = __tok, .t_ns = bpf_ktime_get_ns() }; \
	struct lab_value *__v = bpf_skb_storage_get(map, __skb, NULL, 0, 0);	\
	__u32 __state = LAB_PRESENT;						\
	if (!__v) {								\
		__v = bpf_skb_storage_get(map, __skb, &__init, sizeof(__init),	\
					  BPF_LOCAL_STORAGE_GET_F_CREATE);	\
		__state = __v ? LAB_CREATED : LAB_FAILED;			\
	}									\
	if (__v) {								\
		__v->token = __tok;						\
		__v->writes++;							\
	}									\
	lab_emit(__skb, hook, ifindex, __state, __v, 0, (ctx)->mark, __tok);	\
	__state;								\
})

#endif /* __LAB_OBSERVE_H */
