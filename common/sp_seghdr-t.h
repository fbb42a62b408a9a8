/*
 * sp_seghdr-t.h - the header every shared segment and file starts with.
 *
 *   offset  size  field
 *   ------  ----  ----------------------------------------------------------
 *        0     4  magic        identifies the kind of segment (SP_MAGIC_*)
 *        4     2  version      layout version of that kind
 *        6     2  hdr_size     size of the kind's full header (>= 48)
 *        8     8  total_size   bytes of the whole segment / file
 *       16     8  generation   creator's generation (httpd generation, or a
 *                              backend reload count)
 *       24     8  created_ns   CLOCK_REALTIME at creation (for humans)
 *       32     4  creator_pid
 *       36     4  flags        kind-specific
 *       40     4  reserved     0
 *       44     4  checksum     CRC-32C of bytes 0..hdr_size with this field 0
 *   ------  ----
 *       48
 *
 * The checksum covers the kind's whole header (hdr_size bytes, which start
 * with this structure), so a kind puts only immutable geometry there and
 * keeps live counters elsewhere.
 */
#ifndef SP_SEGHDR_T_H
#define SP_SEGHDR_T_H

#include <stddef.h>
#include <stdint.h>

#define SP_MAGIC_SLOTS 0x53504c54u /* "SPLT" slot table */
#define SP_MAGIC_RING 0x53505247u  /* "SPRG" standalone ring / shm link */
#define SP_MAGIC_POOL 0x5350424cu  /* "SPBL" block pool */
#define SP_MAGIC_SESS 0x53505353u  /* "SPSS" session file */

typedef struct sp_seghdr {
    uint32_t magic;
    uint16_t version;
    uint16_t hdr_size;
    uint64_t total_size;
    uint64_t generation;
    uint64_t created_ns;
    uint32_t creator_pid;
    uint32_t flags;
    uint32_t reserved;
    uint32_t checksum;
} sp_seghdr_t;

_Static_assert(offsetof(sp_seghdr_t, total_size) == 8, "seghdr layout");
_Static_assert(offsetof(sp_seghdr_t, generation) == 16, "seghdr layout");
_Static_assert(offsetof(sp_seghdr_t, checksum) == 44, "seghdr layout");
_Static_assert(sizeof(sp_seghdr_t) == 48, "seghdr layout");

#endif /* SP_SEGHDR_T_H */
