/* SPDX-License-Identifier: GPL-2.0 */
/* The records the lab's BPF programs share with Python: the contract.
 *
 * labkit/records.py decodes these byte for byte; change both together.
 */
#ifndef __LAB_RECORDS_H
#define __LAB_RECORDS_H

/* Test packets carry LAB_MAGIC then a 32-bit token at the start of their
 * UDP payload; the token is what a writer stores and a reader reports.
 */
#define LAB_MAGIC 0x4c4b5342 /* "LKSB" read as a big-endian u32 */

/* Where an observation was made. */
enum lab_hook {
	LAB_HOOK_TC_INGRESS = 1,
	LAB_HOOK_TC_EGRESS = 2,
	LAB_HOOK_CGROUP_INGRESS = 3,
	LAB_HOOK_SOCKET_FILTER = 4,
	LAB_HOOK_AFTER_CLONE = 5, /* the original, right after bpf_clone_redirect */
	LAB_HOOK_SOCK_OPS = 6,    /* sock_ops, TCP header option parsing */
	LAB_HOOK_KFREE_SKB = 7,   /* tp_btf/kfree_skb: the packet is dropped */
};

/* What the storage looked like there. */
enum lab_state {
	LAB_ABSENT = 0,  /* get returned NULL, delete said -ENOENT */
	LAB_PRESENT = 1, /* get returned the value */
	LAB_REFUSED = 2, /* get returned NULL, delete said -EOPNOTSUPP (shared with a clone) */
	LAB_CREATED = 3, /* this hook created it */
	LAB_FAILED = 4,  /* create returned NULL */
};

/* The value kept in skb storage. */
struct lab_value {
	__u32 token;   /* from the packet that created it */
	__u32 writes;  /* hooks that wrote it */
	__u64 t_ns;    /* bpf_ktime_get_ns() at creation */
};

/* One observation, sent through the "events" ring buffer. */
struct lab_event {
	__u64 skb;       /* kernel address of the sk_buff */
	__u64 t_ns;      /* bpf_ktime_get_ns() */
	__u32 hook;      /* enum lab_hook */
	__u32 ifindex;   /* skb->ifindex (ingress) or the egress device */
	__u32 state;     /* enum lab_state */
	__u32 token;     /* lab_value.token when present or created */
	__u32 writes;    /* lab_value.writes when present or created */
	__s32 err;       /* delete's answer when get returned NULL, else 0 */
	__u32 mark;      /* skb->mark */
	__u32 pkt_token; /* token found in the packet itself, 0 if none */
};

#endif /* __LAB_RECORDS_H */
