/* SPDX-License-Identifier: GPL-2.0 */
/* Which test packet is this? Every packet the lab sends carries LAB_MAGIC
 * and a random 32-bit token at the start of its payload.
 */
#ifndef __LAB_TOKEN_H
#define __LAB_TOKEN_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lab_records.h"

/* Look for LAB_MAGIC at the offsets where a UDP payload sits for the
 * encapsulations the lab uses, relative to what this hook calls offset 0:
 * 8 (socket filter: UDP header), 20 (socket filter: TCP header), 28 (IP),
 * 40 (IP + TCP), 42 (Ethernet + IP), 54 (Ethernet + IP + TCP), 62 (IPIP),
 * 66 (GRE), 92 (VXLAN and GENEVE outer headers + inner Ethernet).
 */
static __always_inline __u32 lab_packet_token(struct __sk_buff *ctx)
{
	const __u32 offsets[] = { 8, 20, 28, 40, 42, 54, 62, 66, 92 };
	__u32 hdr[2];

#pragma unroll
	for (int i = 0; i < 9; i++) {
		if (bpf_skb_load_bytes(ctx, offsets[i], hdr, sizeof(hdr)))
			continue;
		if (bpf_ntohl(hdr[0]) == LAB_MAGIC)
			return bpf_ntohl(hdr[1]);
	}
	return 0;
}

#endif /* __LAB_TOKEN_H */
