/* SPDX-License-Identifier: GPL-2.0 */
/* The records the lab's BPF programs share with Python: the contract.
 *
 * labkit/runtime/records.py decodes these byte for byte; change both together.
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
	LAB_HOOK_AF_PACKET = 8,   /* socket filter on an AF_PACKET tap */
	LAB_HOOK_CONSUME_SKB = 9, /* tp_btf/consume_skb: the packet is done with */
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

/* ---- The runtime's records (labkit/runtime/decode.py, bpf/observe.bpf.c) -----
 *
 * One lab_record per observation or lifecycle step of a tracked skb. A skb
 * is tracked once a hook has seen the test token in it; its clones inherit
 * the packet id (the token).
 */
enum lab_kind {
	LAB_K_HOOK = 1,          /* seen at a hook: every slot's state */
	LAB_K_CLONE = 2,         /* skb_clone(): skb is the clone, other the original */
	LAB_K_SCRUB = 3,         /* skb_scrub_packet(): flags = xnet, stack = its callers */
	LAB_K_FREE = 4,          /* skb_release_head_state(): the skb is being freed */
	LAB_K_STORAGE_FREE = 5,  /* bpf_skb_storage_free(): ext = the extension block */
	LAB_K_STASH_CLEAN = 6,   /* the side stash entry removed at consume_skb/kfree_skb */
	LAB_K_STORAGE_ALLOC = 7, /* bpf_selem_alloc() for an skb storage map: ext = the
				  * extension chunk, ifname = the map's name */
	/* From the lab kernel's bpf_skb_storage tracepoints; ifname = the map's name. */
	LAB_K_TP_CREATE = 8,     /* skb_storage_create: a program created the element */
	LAB_K_TP_CLONE = 9,      /* skb_storage_clone: copied to skb (a clone) from other */
	LAB_K_TP_SCRUB = 10,     /* skb_storage_scrub: other = the call site; flags = xnet
				  * | reason << 1 | kept << 8 */
	LAB_K_TP_FREE = 11,      /* skb_storage_free: ext = the chunk; skb = the skb it
				  * was deleted from, or 0 (freed with the last skb) */
	/* The metadata buffer's tracepoints (bpf_skb_ext:*, kernel patch 0011). */
	LAB_K_META_CREATE = 12,  /* skb_ext_bpf_create: ext = the block */
	LAB_K_META_COPY = 13,    /* skb_ext_bpf_copy: other = old block, ext = new block */
	LAB_K_META_SCRUB = 14,   /* skb_ext_bpf_scrub: kept; other = the call site, ext =
				  * the new block, stack[0] = the old; flags = xnet | reason << 1 */
	LAB_K_META_FREE = 15,    /* skb_ext_bpf_free: ext = the block (skb 0) */
	/* The gated skb tracepoints (skb_gated:*, kernel patch 0012). */
	LAB_K_GATED_ARM = 16,    /* a hook armed the skb: bpf_trace_skb() answered err[4] */
	LAB_K_GATED_COPY = 17,   /* skb_copy: skb = dst, other = src */
	LAB_K_GATED_SCRUB = 18,  /* skb_scrub: other = the call site; flags = xnet | reason << 1 */
	LAB_K_GATED_FREE = 19,   /* skb_free: the gated stash's entry was reaped (value[4]) */
};

/* What a hook is asked to do to a test packet before it observes it. */
/* 0: skb storage A, 1: skb storage B, 2: side stash (hash by skb, reaped at every
 * free), 3: the skb's BPF metadata buffer, 4: gated stash (hash by skb, reaped at
 * skb_gated:skb_free)
 */
#define LAB_SLOTS 5
#define LAB_STACK 6

struct lab_point {
	__u32 netns;    /* inode of the network namespace */
	__u32 ifindex;
	__u32 hook;     /* enum lab_hook */
};

struct lab_action {
	__u32 write;          /* bit per slot: create (or update) and store value */
	__u32 del;            /* bit per slot: delete */
	__u32 mark;           /* if non-zero: set skb->mark */
	__u32 clone_ifindex;  /* bpf_clone_redirect() to this device (egress) */
	__u32 redirect_peer;  /* return bpf_redirect_peer() to this device */
	__u32 value[LAB_SLOTS]; /* what to store; 0 means the packet's token */
};

struct lab_record {
	__u64 skb;              /* kernel address of the sk_buff */
	__u64 t_ns;
	__u64 other;            /* clone: the original; scrub: return address */
	__u64 ext;              /* skb->extensions (storage free: the block) */
	__u64 stack[LAB_STACK]; /* scrub: kernel return addresses, innermost first */
	__u32 kind;             /* enum lab_kind */
	__u32 hook;             /* enum lab_hook, for LAB_K_HOOK */
	__u32 ifindex;
	__u32 netns;            /* inode of the device's network namespace */
	__u32 packet;           /* the test token: the packet id clones share */
	__u32 mark;             /* skb->mark */
	__u32 flags;            /* scrub: xnet; hook: clone_redirect's answer + 1 */
	__u32 cpu;              /* bpf_get_smp_processor_id() */
	__u32 state[LAB_SLOTS]; /* enum lab_state per slot */
	__u32 value[LAB_SLOTS]; /* the stored value when present or created */
	__s32 err[LAB_SLOTS];   /* delete's answer when get returned NULL */
	__u32 pad2;
	char ifname[16];
};

#endif /* __LAB_RECORDS_H */
