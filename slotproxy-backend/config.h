/*
 * config.h - slotproxy-backend's configuration: the file syntax, the
 * directives with their defaults, and the parsed form.
 *
 * Syntax, httpd-like: one directive per line, `Name arg...`; names are
 * case-insensitive; arguments are separated by blanks and may be quoted
 * with "..." (backslash escapes \" and \\ inside quotes); '#' starts a
 * comment at the start of a line or after blanks; a trailing '\' joins the
 * next line; blank lines are ignored.  Every error names the file, the
 * line and what is wrong, and nothing is half-applied: a file with one bad
 * line is refused whole.
 *
 * Directives (defaults in brackets):
 *   Listen ADDRESS              tcp://host:port or unix:/path; repeatable;
 *                               at least one.  A tcp listener not bound to
 *                               loopback requires SecretFile.
 *   SecretFile PATH             shared secret for the link handshake
 *                               (HMAC-SHA256); mode must not give "other"
 *                               any access.  [none]
 *   Workers N                   worker processes [4], 1..ServerLimit
 *   ServerLimit N               slot table size, fixed for the daemon's
 *                               life (a reload may raise Workers up to it)
 *                               [max(64, Workers)]
 *   MaxQueue N                  streams waiting for a worker [256]; 0 =
 *                               no queue: 503 when all workers are busy
 *   QueueTimeout SECONDS        longest wait in the queue [30]
 *   RequestTimeout SECONDS      longest a worker may take for one request,
 *                               from ACCEPTED to END; past it the worker
 *                               is killed and the stream gets 504 [300]
 *   MaxRequestsPerWorker N      recycle a worker after N requests [0 = no]
 *   GracefulTimeout SECONDS     on TERM, how long in-flight requests may
 *                               finish [10]
 *   Handler PREFIX SPEC [ARG]   map a URI prefix to builtin:NAME,
 *                               plugin:/path.so or cgi:/dir; repeatable;
 *                               longest prefix wins
 *   CGITimeout SECONDS          CGI script time limit [60]
 *   MaxPayload BYTES            largest frame payload accepted [65536]
 *   InitialWindow BYTES         per-stream request-body window [262144]
 *   SlotBufferSize BYTES        each worker ring's size (per direction),
 *                               a power of two >= 64 KiB [262144]
 *   MaxLinks N                  simultaneous links [1024]
 *   PingInterval SECONDS        idle links get a PING [30]; a link silent
 *                               for 3 intervals is closed
 *   PidFile PATH                [none]
 *   ErrorLog PATH|stderr        [stderr]
 *   LogLevel error|warn|info|debug   [warn]
 *   User NAME / Group NAME      drop privileges to these when started as
 *                               root [none: stay]
 *   NodeName NAME               name shown to frontends [hostname]
 */
#ifndef SPB_CONFIG_H
#define SPB_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "sp_net.h"

#define SPB_MAX_LISTEN 16
#define SPB_MAX_HANDLERS 64

enum spb_loglevel {
    SPB_LOG_ERR = 3,
    SPB_LOG_WARN = 4,
    SPB_LOG_INFO = 6,
    SPB_LOG_DEBUG = 7
};

typedef struct spb_handler_conf {
    char prefix[256];
    char spec[1024]; /* builtin:NAME | plugin:/path | cgi:/dir */
    char arg[1024];  /* "" if none */
    int line;        /* where it was declared, for messages */
} spb_handler_conf_t;

typedef struct spb_config {
    char file[1024];
    sp_addr_t listen[SPB_MAX_LISTEN];
    int nlisten;
    char secret_file[1024];
    int workers;
    int server_limit;
    int max_queue;
    int queue_timeout_s;
    int request_timeout_s;
    long max_requests_per_worker;
    int graceful_timeout_s;
    spb_handler_conf_t handlers[SPB_MAX_HANDLERS];
    int nhandlers;
    int cgi_timeout_s;
    uint32_t max_payload;
    uint32_t initial_window;
    uint32_t slot_buffer_size;
    int max_links;
    int ping_interval_s;
    char pid_file[1024];
    char error_log[1024];
    int log_level;
    char user[64];
    char group[64];
    char node_name[64];
    int sched_batch; /* Scheduling: 1 = batch [default], 0 = normal */
    int poll_us;     /* PollTime: microseconds [200], 0 = never poll */
    /* Where Listen, SecretFile, Workers and ServerLimit were given (0 =
     * not given), so that spb_config_check can name the line. */
    int listen_line[SPB_MAX_LISTEN];
    int secret_file_line;
    int workers_line;
    int server_limit_line;
} spb_config_t;

/* Defaults for everything. */
void spb_config_defaults(spb_config_t *c);

/* Parse the file at path into c (which gets defaults first).  0, or -1
 * with "FILE:LINE: message" in err ("FILE: message" for what concerns the
 * whole file: cannot read, too large); on failure *c is left as it was.
 * Does not touch the file system beyond reading path (addresses are
 * resolved; handler targets and the secret file are checked by
 * spb_config_check). */
int spb_config_load(spb_config_t *c, const char *path, char *err,
                    size_t errlen);

/* Parse from memory (name is used in messages).  Same contract. */
int spb_config_parse(spb_config_t *c, const char *name, const char *text,
                     size_t len, char *err, size_t errlen);

/* Cross-checks after parsing: at least one Listen; Workers <=
 * ServerLimit; non-local tcp listener needs SecretFile; the secret file
 * loads; every handler spec is well-formed (known builtin, plugin path
 * absolute, cgi dir absolute).  0 or -1 with a message naming the line. */
int spb_config_check(const spb_config_t *c, char *err, size_t errlen);

#endif /* SPB_CONFIG_H */
