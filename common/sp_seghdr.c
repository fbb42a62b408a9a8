/*
 * sp_seghdr.c - segment header stamping and checking (sp_seghdr-t.h).
 */
#include "sp_seghdr.h"

#include <time.h>
#include <unistd.h>

#include "sp_crc.h"
#include "sp_error.h"

static uint32_t seghdr_sum(const sp_seghdr_t *h)
{
    sp_seghdr_t copy = *h;
    copy.checksum = 0;
    uint32_t crc = sp_crc32c(0, &copy, sizeof(copy));
    if (h->hdr_size > sizeof(copy))
        crc = sp_crc32c(crc, (const char *)h + sizeof(copy),
                        h->hdr_size - sizeof(copy));
    return crc;
}

void sp_seghdr_seal(sp_seghdr_t *h)
{
    h->checksum = seghdr_sum(h);
}

void sp_seghdr_stamp(sp_seghdr_t *h, uint32_t magic, uint16_t version,
                     uint16_t hdr_size, uint64_t total_size,
                     uint64_t generation)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->magic = magic;
    h->version = version;
    h->hdr_size = hdr_size;
    h->total_size = total_size;
    h->generation = generation;
    h->created_ns = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
    h->creator_pid = (uint32_t)getpid();
    h->reserved = 0;
    sp_seghdr_seal(h);
}

int sp_seghdr_check(const sp_seghdr_t *h, size_t avail, uint32_t magic,
                    uint16_t version, uint16_t want_hdr_size,
                    uint64_t want_generation)
{
    if (avail < sizeof(*h))
        return SP_EMSGSIZE;
    if (h->magic != magic)
        return SP_EBADMAGIC;
    if (h->version != version || h->hdr_size != want_hdr_size)
        return SP_EBADVER;
    if (h->hdr_size < sizeof(*h) || h->hdr_size > avail ||
        h->total_size > avail)
        return SP_EMSGSIZE;
    if (seghdr_sum(h) != h->checksum)
        return SP_ECHECKSUM;
    if (want_generation != 0 && h->generation != want_generation)
        return SP_ESTALE;
    return 0;
}
