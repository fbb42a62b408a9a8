/*
 * fuzz_head.c - libFuzzer target for the request/response head decoders.
 *
 * Input: one selector byte, then a head payload.
 *   bit 0     1 = request head, 0 = response head
 *   bits 1-6  kvcap (0..63): how many sp_kv_t the caller offers
 *   bit 7     1 = tight limits (max_fields 8, max_field_len 32)
 * Checks beyond ASan/UBSan: only documented errors; on success the counts
 * respect kvcap and the limits, every string lies inside the input and is
 * NUL-terminated there, and the head re-encodes to exactly the input
 * (sp_*head_size agrees).
 *
 * Seeds: tests/fuzz/corpus/head/ (made by tests/fuzz/mkcorpus.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp_error.h"
#include "sp_head.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            abort();                                                           \
    } while (0)

static void str_inside(sp_str_t s, const uint8_t *p, size_t len,
                       uint32_t maxlen)
{
    CHECK(s.ptr != NULL && s.ptr[s.len] == '\0');
    CHECK(s.len <= maxlen);
    if (s.len > 0)
        CHECK((const uint8_t *)s.ptr >= p &&
              (const uint8_t *)s.ptr + s.len < p + len);
}

static void kv_inside(const sp_kv_t *kv, uint32_t n, const uint8_t *p,
                      size_t len, uint32_t maxlen)
{
    uint32_t i;
    for (i = 0; i < n; i++) {
        str_inside(kv[i].name, p, len, maxlen);
        str_inside(kv[i].value, p, len, maxlen);
        CHECK(kv[i].name.len > 0);
    }
}

static void reencodes(int n, const uint8_t *re, const uint8_t *p, size_t len)
{
    CHECK(n >= 0 && (size_t)n == len);
    CHECK(memcmp(re, p, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_head_limits_t lim = SP_HEAD_LIMITS_DEFAULT;
    sp_kv_t kv[64];
    uint32_t kvcap;
    const uint8_t *p;
    size_t len;
    uint8_t *re;
    int rc;

    if (size < 1)
        return 0;
    kvcap = (data[0] >> 1) & 0x3f;
    if (data[0] & 0x80) {
        lim.max_fields = 8;
        lim.max_field_len = 32;
    }
    p = data + 1;
    len = size - 1;
    re = malloc(len + 1);
    if (re == NULL)
        return 0;

    if (data[0] & 1) {
        sp_reqhead_t h;
        rc = sp_reqhead_decode(p, len, &lim, &h, kv, kvcap);
        if (rc == 0) {
            CHECK(h.nheaders + h.nenv <= kvcap);
            CHECK(h.nheaders + h.nenv <= lim.max_fields);
            CHECK(h.headers == kv && h.env == kv + h.nheaders);
            str_inside(h.method, p, len, lim.max_field_len);
            str_inside(h.uri, p, len, lim.max_field_len);
            str_inside(h.auth_type, p, len, lim.max_field_len);
            kv_inside(kv, h.nheaders + h.nenv, p, len, lim.max_field_len);
            CHECK(h.content_length >= -1);
            CHECK(sp_reqhead_size(&h) == len);
            reencodes(sp_reqhead_encode(&h, re, len + 1), re, p, len);
        }
    } else {
        sp_resphead_t h;
        rc = sp_resphead_decode(p, len, &lim, &h, kv, kvcap);
        if (rc == 0) {
            CHECK(h.nheaders <= kvcap && h.nheaders <= lim.max_fields);
            CHECK(h.status >= 100 && h.status <= 999);
            str_inside(h.reason, p, len, lim.max_field_len);
            kv_inside(kv, h.nheaders, p, len, lim.max_field_len);
            CHECK(sp_resphead_size(&h) == len);
            reencodes(sp_resphead_encode(&h, re, len + 1), re, p, len);
        }
    }
    CHECK(rc == 0 || rc == SP_EPROTO || rc == SP_ELIMIT);
    free(re);
    return 0;
}
