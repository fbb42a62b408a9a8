/*
 * sp_auth.c - shared secrets and the handshake proofs (see sp_auth.h).
 *
 * The proof of a side is HMAC-SHA256(secret, sp_auth_msg(side, nonce_c,
 * nonce_s)) computed by OpenSSL's libcrypto; the message layout (distinct
 * labels and nonce orders per side, so a proof can never be reflected back
 * as the other side's) is sp_frame.c's.  Both nonces are fresh per link
 * (getrandom, 32 bytes), so a recorded proof is useless on another link.
 *
 * Secret files hold the secret's bytes as they are, less one trailing
 * newline (or CRLF) that editors and `echo` add.  A file that "other" may
 * read or write is refused outright: such a secret is not one.  Secrets
 * and intermediate MACs are wiped from the stack with OPENSSL_cleanse.
 */
#include "sp_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_frame.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SP_EINVAL;
}

int sp_auth_load_secret(const char *path, uint8_t *buf, size_t cap, size_t *len,
                        char *err, size_t errlen)
{
    /* Room for the longest secret, a CRLF, and one byte that shows the
     * file is longer still. */
    uint8_t tmp[SP_SECRET_MAX + 3];
    size_t n = 0;
    struct stat st;
    int fd, rc;

    *len = 0;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail(err, errlen, "secret file %.200s: %s", path,
                    strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = fail(err, errlen, "secret file %.200s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc =
            fail(err, errlen, "secret file %.200s is not a regular file", path);
        goto out;
    }
    if (st.st_mode & 0006) {
        rc = fail(err, errlen,
                  "secret file %.200s is accessible by others (mode %04o); "
                  "chmod o-rwx it",
                  path, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    while (n < sizeof(tmp)) {
        ssize_t r = read(fd, tmp + n, sizeof(tmp) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = fail(err, errlen, "secret file %.200s: %s", path,
                      strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > 0 && tmp[n - 1] == '\n') {
        n--;
        if (n > 0 && tmp[n - 1] == '\r')
            n--;
    }
    if (n < SP_SECRET_MIN) {
        rc = fail(err, errlen,
                  "secret file %.200s holds %zu bytes, at least %d needed",
                  path, n, SP_SECRET_MIN);
        goto out;
    }
    if (n > SP_SECRET_MAX) {
        rc = fail(err, errlen,
                  "secret file %.200s is over the limit of %d bytes", path,
                  SP_SECRET_MAX);
        goto out;
    }
    if (n > cap) {
        rc = fail(err, errlen,
                  "secret file %.200s: %zu bytes do not fit the buffer (%zu)",
                  path, n, cap);
        goto out;
    }
    memcpy(buf, tmp, n);
    *len = n;
    rc = 0;
out:
    OPENSSL_cleanse(tmp, sizeof(tmp));
    close(fd);
    return rc;
}

int sp_auth_nonce(uint8_t out[SP_NONCE_SIZE])
{
    size_t got = 0;

    while (got < SP_NONCE_SIZE) {
        ssize_t r = getrandom(out + got, SP_NONCE_SIZE - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return SP_ESYS;
        got += (size_t)r;
    }
    return 0;
}

/* HMAC-SHA256 of the side's message.  0, or -1 if libcrypto failed (out is
 * then zeroed: a zero proof never verifies against a secret). */
static int proof_of(const uint8_t *secret, size_t secret_len, int client,
                    const uint8_t nonce_c[SP_NONCE_SIZE],
                    const uint8_t nonce_s[SP_NONCE_SIZE],
                    uint8_t out[SP_PROOF_SIZE])
{
    static const uint8_t nokey[1];
    uint8_t msg[SP_AUTH_MSG_SIZE];
    unsigned int outlen = 0;
    unsigned char *p;

    if (secret_len > INT_MAX) {
        memset(out, 0, SP_PROOF_SIZE);
        return -1;
    }
    sp_auth_msg(msg, client, nonce_c, nonce_s);
    p = HMAC(EVP_sha256(), secret_len ? secret : nokey, (int)secret_len, msg,
             sizeof(msg), out, &outlen);
    if (p == NULL || outlen != SP_PROOF_SIZE) {
        memset(out, 0, SP_PROOF_SIZE);
        return -1;
    }
    return 0;
}

void sp_auth_proof(const uint8_t *secret, size_t secret_len, int client,
                   const uint8_t nonce_c[SP_NONCE_SIZE],
                   const uint8_t nonce_s[SP_NONCE_SIZE],
                   uint8_t out[SP_PROOF_SIZE])
{
    (void)proof_of(secret, secret_len, client, nonce_c, nonce_s, out);
}

int sp_auth_verify(const uint8_t *secret, size_t secret_len, int client,
                   const uint8_t nonce_c[SP_NONCE_SIZE],
                   const uint8_t nonce_s[SP_NONCE_SIZE],
                   const uint8_t proof[SP_PROOF_SIZE])
{
    uint8_t want[SP_PROOF_SIZE];
    int ok;

    ok = proof_of(secret, secret_len, client, nonce_c, nonce_s, want) == 0 &&
         CRYPTO_memcmp(want, proof, SP_PROOF_SIZE) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    return ok;
}
