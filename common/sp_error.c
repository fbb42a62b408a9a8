/*
 * sp_error.c - texts for the SP_E* codes of sp_error.h.
 */
#include "sp_error.h"

const char *sp_strerror(int code)
{
    switch (code) {
    case SP_OK: return "success";
    case SP_EAGAIN: return "would block / need more bytes";
    case SP_ETIMEDOUT: return "deadline passed";
    case SP_EINVAL: return "invalid argument";
    case SP_EPROTO: return "protocol error";
    case SP_ELIMIT: return "over limit";
    case SP_EMSGSIZE: return "message too large";
    case SP_EBADVER: return "unsupported version";
    case SP_EBADMAGIC: return "bad magic";
    case SP_ECHECKSUM: return "checksum mismatch";
    case SP_ENOSPC: return "no space";
    case SP_EBUSY: return "busy";
    case SP_ESTALE: return "stale generation";
    case SP_EPEERDEAD: return "peer process died";
    case SP_ESTATE: return "wrong state";
    case SP_ESYS: return "system call failed";
    case SP_ECLOSED: return "closed";
    case SP_EUNKNOWN: return "unknown";
    case SP_EAUTH: return "authentication failed";
    }
    return "unknown error code";
}
