/*
 * sp_error.h - error codes of common/.
 *
 * Every common/ function returns 0 (or a non-negative count) on success and
 * a negative SP_E* code on failure, in the manner of libuv.  SP_EAGAIN is
 * not a failure: it means "need more bytes" for a decoder and "would block"
 * for a non-blocking ring or slot operation.  Codes are stable: they cross
 * process boundaries in logs and tests, never on the wire (the protocol has
 * its own codes in sp_frame-t.h).
 */
#ifndef SP_ERROR_H
#define SP_ERROR_H

enum {
    SP_OK = 0,
    SP_EAGAIN = -1,     /* need more bytes / would block */
    SP_ETIMEDOUT = -2,  /* a deadline passed */
    SP_EINVAL = -3,     /* bad argument or impossible request */
    SP_EPROTO = -4,     /* malformed input from outside */
    SP_ELIMIT = -5,     /* a length or count is over the negotiated limit */
    SP_EMSGSIZE = -6,   /* message larger than the buffer or the ring */
    SP_EBADVER = -7,    /* unsupported version or layout */
    SP_EBADMAGIC = -8,  /* not one of our segments or files */
    SP_ECHECKSUM = -9,  /* checksum mismatch */
    SP_ENOSPC = -10,    /* no free slot / block / room */
    SP_EBUSY = -11,     /* taken by a live owner */
    SP_ESTALE = -12,    /* generation or sequence mismatch */
    SP_EPEERDEAD = -13, /* the process on the other side is gone */
    SP_ESTATE = -14,    /* object is not in the state the call requires */
    SP_ESYS = -15,      /* a system call failed; errno has the detail */
    SP_ECLOSED = -16,   /* the other side closed / cancelled */
    SP_EUNKNOWN = -17,  /* unknown type or name */
    SP_EAUTH = -18,     /* authentication failed */
};

/* A short English text for an SP_E* code (static storage). */
const char *sp_strerror(int code);

#endif /* SP_ERROR_H */
