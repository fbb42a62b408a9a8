/*
 * sp_auth.h - the link handshake's shared-secret proofs: HMAC-SHA256
 * (OpenSSL libcrypto) over sp_auth_msg() (sp_frame.h), nonces from
 * getrandom(), constant-time comparison.  No hand-rolled crypto.
 */
#ifndef SP_AUTH_H
#define SP_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "sp_frame-t.h"

#define SP_SECRET_MIN 16
#define SP_SECRET_MAX 1024

/* Read a secret file: its bytes, less one trailing newline (or CRLF).
 * Refuses (SP_EINVAL, reason in err) a missing or unreadable file, one
 * shorter than SP_SECRET_MIN or longer than SP_SECRET_MAX bytes, and one
 * that is readable or writable by "other" (mode & 0006).  *len gets the
 * length. */
int sp_auth_load_secret(const char *path, uint8_t *buf, size_t cap,
                        size_t *len, char *err, size_t errlen);

/* 32 random bytes.  0 or SP_ESYS. */
int sp_auth_nonce(uint8_t out[SP_NONCE_SIZE]);

/* The proof of one side (client != 0: the AUTH proof; 0: HELLO_ACK's). */
void sp_auth_proof(const uint8_t *secret, size_t secret_len, int client,
                   const uint8_t nonce_c[SP_NONCE_SIZE],
                   const uint8_t nonce_s[SP_NONCE_SIZE],
                   uint8_t out[SP_PROOF_SIZE]);

/* 1 if proof is right for that side, 0 if not (constant time). */
int sp_auth_verify(const uint8_t *secret, size_t secret_len, int client,
                   const uint8_t nonce_c[SP_NONCE_SIZE],
                   const uint8_t nonce_s[SP_NONCE_SIZE],
                   const uint8_t proof[SP_PROOF_SIZE]);

#endif /* SP_AUTH_H */
