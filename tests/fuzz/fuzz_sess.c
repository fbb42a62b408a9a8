/*
 * fuzz_sess.c - libFuzzer target for the session file's open path: the
 * bytes of a session file come from outside (a disk, a previous crash, an
 * operator), so opening one must never crash and must either repair it or
 * start afresh.
 *
 * Each input is written as the session file in a private temp directory
 * and opened (alone, so the full recovery runs: header check, migration
 * when the sizes differ from the configuration, truncation, entry checks,
 * allocator rebuild).  Inputs of odd length get their header checksum
 * recomputed before they are written (when the header's hdr_size is
 * right), so mutated geometries get past the checksum and the geometry
 * checks and the migration to the configured sizes are explored too.
 * Beyond "no crash, no sanitizer report" it checks
 * the store's promises:
 *  - sp_sess_open() succeeds (the file is repaired or recreated);
 *  - every log line is one line with an SPS/SPP tag;
 *  - the allocator is consistent afterwards (sp_pool_check() == 0) and
 *    holds exactly one block per live session;
 *  - every session that iterate reports can be read (its checksum holds);
 *  - the store keeps working: put, create, delete, expire, and the
 *    allocator is still consistent.
 *
 * Build (see the Makefile's fuzz target):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -Icommon \
 *     -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_sess.c \
 *     common/\*.c -lcrypto -o fuzz_sess
 * Seeds: tests/fuzz/corpus/sess/, written by this file built as a program:
 *   cc -std=c11 -D_GNU_SOURCE -DFUZZ_SESS_MKCORPUS -Icommon \
 *     tests/fuzz/fuzz_sess.c common/\*.c -lcrypto -pthread -o /tmp/mk &&
 *   /tmp/mk tests/fuzz/corpus/sess
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_seghdr.h"
#include "sp_sess.h"

/* The configuration every input is opened with (the seeds use it too, so
 * the fuzzer starts from files that recover, not from ones recreated). */
static sp_sess_conf_t fuzz_conf(void)
{
    sp_sess_conf_t c;
    memset(&c, 0, sizeof(c));
    c.max_sessions = 8; /* 64 entries */
    c.data_bytes = 16 << 10;
    c.max_value = 1024;
    c.min_block = 64;
    c.max_owners = 8;
    c.create = 1;
    return c;
}

#define MUST(cond)                                                             \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_sess: %s failed at line %d\n", #cond,        \
                    __LINE__);                                                 \
            abort();                                                           \
        }                                                                      \
    } while (0)

#ifndef FUZZ_SESS_MKCORPUS

static void check_log(void *arg, const char *msg)
{
    (void)arg;
    if ((strncmp(msg, "SPS", 3) != 0 && strncmp(msg, "SPP", 3) != 0) ||
        strchr(msg, '\n') != NULL) {
        fprintf(stderr, "bad log line: %s\n", msg);
        abort();
    }
}

struct seen {
    sp_sess_t *s;
    int n;
};

static int on_session(void *arg, const sp_sess_info_t *info)
{
    struct seen *w = arg;
    static unsigned char buf[1024];
    size_t len = 0;
    int rc = sp_sess_get(w->s, info->id, buf, sizeof(buf), &len, 0);
    MUST(rc == 0 && len == info->length);
    w->n++;
    return 0;
}

static uint64_t used_blocks(const sp_sess_t *s)
{
    sp_sess_stats_t st;
    sp_sess_stats(s, &st);
    uint64_t n = 0;
    for (unsigned k = 0; k < st.pool.norders; k++)
        n += st.pool.nused[k];
    return n;
}

static char dir[] = "/tmp/fuzz_sess_XXXXXX";
static char path[128];

static void remove_tmp(void)
{
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (path[0] == '\0') {
        MUST(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/sessions", dir);
        atexit(remove_tmp);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    MUST(fd >= 0);
    MUST(size == 0 || write(fd, data, size) == (ssize_t)size);
    if (size % 2 == 1 && size >= sizeof(sp_sess_hdr_t)) {
        sp_sess_hdr_t h;
        memcpy(&h, data, sizeof(h));
        if (h.seg.hdr_size == sizeof(h)) {
            sp_seghdr_seal(&h.seg);
            MUST(pwrite(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h));
        }
    }
    close(fd);

    sp_sess_conf_t c = fuzz_conf();
    sp_sess_t s;
    MUST(sp_sess_open(&s, path, &c, check_log, NULL) == 0);
    MUST(sp_pool_check(&s.pool, 0) == 0);
    sp_sess_stats_t st;
    sp_sess_stats(&s, &st);
    MUST(st.entries == 64 && used_blocks(&s) == st.live);
    struct seen w = {&s, 0};
    MUST(sp_sess_iterate(&s, on_session, &w) == 0);
    MUST((uint64_t)w.n == st.live);

    /* Still a working store. */
    char id[SP_SESS_ID_LEN + 1];
    int rc = sp_sess_create(&s, data, size < 200 ? size : 200, 0, id);
    MUST(rc == 0 || rc == SP_ENOSPC);
    if (rc == 0) {
        MUST(sp_sess_put(&s, id, "x", 1, SP_SESS_KEEP_EXPIRY, 0) == 0);
        MUST(sp_sess_delete(&s, id, 0) == 0);
    }
    sp_sess_expire(&s);
    MUST(sp_pool_check(&s.pool, 0) == 0);
    sp_sess_close(&s);
    return 0;
}

#else /* FUZZ_SESS_MKCORPUS: write the seeds */

static sp_sess_t s;
static char dir[512];

static void open_at(const char *name, sp_sess_conf_t c)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    unlink(p);
    if (sp_sess_open(&s, p, &c, NULL, NULL) != 0) {
        perror(p);
        exit(1);
    }
}

static void add(int n, size_t len, int64_t expires)
{
    static unsigned char v[1024];
    for (int i = 0; i < n; i++) {
        char id[SP_SESS_ID_LEN + 1];
        memset(v, 'a' + i, len);
        if (sp_sess_create(&s, v, len, expires, id) != 0)
            exit(2);
        if (i % 2 == 0 && expires == 0 &&
            sp_sess_put(&s, id, v, len / 2 + 1, SP_SESS_KEEP_EXPIRY, 0) != 0)
            exit(3);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s corpus/sess\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof(dir), "%s", argv[1]);
    sp_sess_conf_t c = fuzz_conf();
    open_at("empty", c);
    sp_sess_close(&s);
    open_at("five", c);
    add(5, 100, 0);
    sp_sess_close(&s);
    open_at("mixed", c);
    add(3, 10, 0);
    add(2, 900, sp_sess_now() + 3600 * SP_NSEC_PER_SEC);
    add(1, 50, 1); /* expired long ago */
    sp_sess_close(&s);
    /* Other sizes: opening with the fuzz configuration migrates. */
    sp_sess_conf_t other = c;
    other.max_sessions = 16;
    other.max_value = 512;
    open_at("othersize", other);
    add(4, 300, 0);
    sp_sess_close(&s);
    /* Truncated in the data region. */
    open_at("truncated", c);
    add(6, 700, 0);
    struct stat sb;
    char p[600];
    snprintf(p, sizeof(p), "%s/truncated", dir);
    off_t cut = (off_t)(s.hdr->data_off + 6000);
    sp_sess_close(&s);
    if (stat(p, &sb) != 0 || truncate(p, cut) != 0)
        return 4;
    return 0;
}

#endif
