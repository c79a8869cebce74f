/* SPDX-License-Identifier: GPL-2.0 */
/* What came after the RFC, as BPF programs see it on the lab kernel
 * (kernel/patches 0011 and 0012; none of it is merged upstream).
 *
 * The metadata buffer is declared as the proposal on the list declares it,
 * with struct __sk_buff: skb programs pass their context. The lab kernel's
 * kfunc takes struct sk_buff, which libbpf matches (both are structs), so
 * tracing and LSM programs pass the skb they are given.
 */
#ifndef __LAB_SKB_EXT_H
#define __LAB_SKB_EXT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* The BPF metadata buffer in an skb extension (SKB_EXT_BPF). */
extern int bpf_dynptr_from_skb_ext(struct __sk_buff *skb, __u32 size, __u64 flags,
				   struct bpf_dynptr *ptr__uninit) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *p, __u32 offset,
			      void *buffer__opt, __u32 buffer__szk) __ksym;
extern void *bpf_dynptr_slice_rdwr(const struct bpf_dynptr *p, __u32 offset,
				   void *buffer__opt, __u32 buffer__szk) __ksym;
extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;
extern bool bpf_dynptr_is_rdonly(const struct bpf_dynptr *p) __ksym;

/* The gated skb tracepoints: follow this skb (SKB_EXT_TRACE). */
extern int bpf_trace_skb(struct sk_buff *skb, __u64 flags) __ksym;

#ifndef E2BIG
#define E2BIG 7
#endif

#endif /* __LAB_SKB_EXT_H */
