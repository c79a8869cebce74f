/* SPDX-License-Identifier: GPL-2.0 */
/* The skb local storage API as BPF programs see it.
 *
 * The declarations are the RFC's, so programs written for it build here
 * unchanged: the kfuncs take the kernel struct sk_buff, which skb programs
 * get from bpf_cast_to_kern_ctx(ctx).
 */
#ifndef __LAB_SKB_STORAGE_H
#define __LAB_SKB_STORAGE_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern void *bpf_skb_storage_get(struct bpf_map *map, struct sk_buff *skb,
				 void *value, __u32 value__szk, __u64 flags) __ksym;
extern int bpf_skb_storage_delete(struct bpf_map *map, struct sk_buff *skb) __ksym;
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* An skb storage map: BPF_F_NO_PREALLOC and an int key, as for every
 * local storage; the value type is the program's own.
 */
#define SKB_STORAGE_MAP(name, value_type)				\
	struct {							\
		__uint(type, BPF_MAP_TYPE_SKB_STORAGE);			\
		__uint(map_flags, BPF_F_NO_PREALLOC);			\
		__type(key, int);					\
		__type(value, value_type);				\
	} name SEC(".maps")

#ifndef ENOENT
#define ENOENT 2
#endif
#ifndef EINVAL
#define EINVAL 22
#endif
#ifndef EOPNOTSUPP
#define EOPNOTSUPP 95
#endif

/* Whether the skb storage chunk of an extension block holds an element
 * in its bpf_local_storage. For the kprobe on bpf_skb_storage_free() that
 * stands in for the tracepoints on kernels without them (patch 0007), where
 * every element is in the bpf_local_storage (the lab kernel's takes the
 * block and has the tracepoints).
 */
#define lab_chunk_holds(ext) (BPF_CORE_READ(ext, storage) != NULL)

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

#endif /* __LAB_SKB_STORAGE_H */
