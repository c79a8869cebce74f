/* SPDX-License-Identifier: GPL-2.0 */
/* For your own programs in the lab (the notebooks' %%bpf cells): the skb
 * storage API, the packet's test token and lab_report(), which puts a
 * number into the run's event log next to what the lab's observer saw.
 *
 *	#include "lab_user.h"
 *
 *	SEC("cgroup_skb/ingress")
 *	int my_reader(struct __sk_buff *ctx)
 *	{
 *		lab_report(ctx, LAB_REPORT_VALUE, 42);
 *		return 1;
 *	}
 *
 * Reports appear in the log as events of kind "report" with the packet
 * they belong to (found from the token), the hook, the tag and the value.
 */
#ifndef __LAB_USER_H
#define __LAB_USER_H

#include "skb_storage.h"
#include "lab_token.h"

/* What a number means; the lesson says which one its check looks for. */
enum lab_report_tag {
	LAB_REPORT_VALUE = 1,    /* a value read back from storage */
	LAB_REPORT_DELAY_NS = 2, /* a time difference in nanoseconds */
	LAB_REPORT_ABSENT = 3,   /* no storage on this skb */
	LAB_REPORT_REFUSED = 4,  /* storage refused: the skb shares its extensions with a clone */
	LAB_REPORT_PRESENT = 5,  /* storage found */
	LAB_REPORT_WRITTEN = 6,  /* a value written into storage */
	LAB_REPORT_WIRE = 7,     /* a header field as the wire carries it (the lab's own probes) */
};

/* One report; labkit/runtime/decode.py decodes it (keep both in step). */
struct lab_report {
	__u64 skb;   /* kernel address of the sk_buff */
	__u64 t_ns;  /* bpf_ktime_get_ns() */
	__u32 token; /* the packet's test token, 0 if none */
	__u32 tag;   /* enum lab_report_tag */
	__u64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} reports SEC(".maps");

/* Put (tag, value) for this packet into the event log. */
static __always_inline void lab_report(struct __sk_buff *ctx, __u32 tag, __u64 value)
{
	struct lab_report *r = bpf_ringbuf_reserve(&reports, sizeof(*r), 0);

	if (!r)
		return;
	r->skb = (__u64)(unsigned long)bpf_cast_to_kern_ctx(ctx);
	r->t_ns = bpf_ktime_get_ns();
	r->token = lab_packet_token(ctx);
	r->tag = tag;
	r->value = value;
	bpf_ringbuf_submit(r, 0);
}

#endif /* __LAB_USER_H */
