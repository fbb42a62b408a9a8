/*
 * sp_seghdr.h - stamping and verifying segment headers (sp_seghdr-t.h).
 */
#ifndef SP_SEGHDR_H
#define SP_SEGHDR_H

#include "sp_seghdr-t.h"

/* Fill the header at the start of a kind's header of hdr_size bytes and
 * compute its checksum.  Call after the rest of the kind's header is set. */
void sp_seghdr_stamp(sp_seghdr_t *h, uint32_t magic, uint16_t version,
                     uint16_t hdr_size, uint64_t total_size,
                     uint64_t generation);

/* Recompute the checksum after a kind changed its (immutable) header. */
void sp_seghdr_seal(sp_seghdr_t *h);

/* Verify a header found in memory of avail bytes.  Returns 0, or
 *   SP_EMSGSIZE  avail is smaller than the header or the recorded size,
 *   SP_EBADMAGIC wrong magic,
 *   SP_EBADVER   other version, or hdr_size != want_hdr_size,
 *   SP_ECHECKSUM the header checksum fails,
 *   SP_ESTALE    want_generation != 0 and differs from the stamp. */
int sp_seghdr_check(const sp_seghdr_t *h, size_t avail, uint32_t magic,
                    uint16_t version, uint16_t want_hdr_size,
                    uint64_t want_generation);

#endif /* SP_SEGHDR_H */
