/*
 * config.c - slotproxy-backend's configuration file parser (config.h has
 * the syntax and the directives; docs/backend-config.md the full
 * reference).
 *
 * The parser works in three steps over each logical line, all bounded:
 *
 *  1. Lines.  The text is cut at '\n'; a '\r' before it is dropped (CRLF
 *     files); a '\' as the very last byte of a physical line joins the
 *     next one, with the backslash and the line break removed and nothing
 *     inserted (httpd's rule; it applies to comment lines too).  A logical
 *     line longer than SPB_LINE_MAX bytes, or a NUL byte anywhere, is an
 *     error; the whole text may not exceed SPB_FILE_MAX bytes.  Messages
 *     name the first physical line of a logical line (the one the
 *     directive starts on), except for a NUL byte, which names its own.
 *  2. Words.  Blanks are space and tab.  A word starting with '"' runs to
 *     the next unescaped '"' and may contain blanks and '#'; inside it \"
 *     and \\ are the only escapes, and the closing quote must be followed
 *     by a blank or the end of the line.  A '"' inside an unquoted word is
 *     an error (quote the whole word instead).  A '#' at the start of a
 *     word outside quotes starts a comment to the end of the line, so
 *     "a#b" is one word and "a #b" is "a" plus a comment.  Words are
 *     unescaped into a second buffer of the same size (unescaping only
 *     shrinks: a word of n bytes plus its separator needs n + 1), so
 *     nothing can overflow.
 *  3. Directive.  The first word is looked up case-insensitively in a
 *     table giving the argument counts and the kind of value (integer,
 *     size with K/M suffix, string, or a function of its own).  Integers
 *     are strictly decimal (strtol with full consumption and a range).
 *
 * Nothing is half-applied: everything is built in a private heap copy of
 * spb_config_t, copied to the caller's only when the whole text parsed.
 * Single-valued directives may repeat and the last one wins (httpd does the
 * same); Listen and Handler accumulate up to SPB_MAX_LISTEN and
 * SPB_MAX_HANDLERS.  Text quoted back in messages is shortened and its
 * control bytes escaped, so a hostile file cannot forge log lines.
 *
 * No logging, no global state: the functions are safe from any thread
 * (sp_addr_parse may resolve names with getaddrinfo, which is too).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sp_auth.h"
#include "sp_error.h"
#include "sp_frame-t.h"
#include "sp_net.h"

#define SPB_LINE_MAX 16384         /* bytes in a logical line */
#define SPB_FILE_MAX (1024 * 1024) /* bytes in a file */
#define CONF_ARGV_MAX 8  /* words kept per line; more are only counted */
#define CONF_SHOW_MAX 64 /* bytes of user text quoted in a message */
#define SHOW_CAP (CONF_SHOW_MAX * 4 + 8) /* conf_show's worst case */

#define SPB_WORKERS_MAX 4096
#define SPB_POLL_US_MAX 10000
#define SPB_SLOT_BUFFER_MIN (64L * 1024)
#define SPB_SLOT_BUFFER_MAX (64L * 1024 * 1024)
#define SPB_WINDOW_MIN 4096L

typedef struct conf_parser {
    spb_config_t c;   /* built here, copied out on success */
    const char *name; /* file name for messages */
    char *err;
    size_t errlen;
    int line; /* line named by the next message */
    int server_limit_set;
    int argc; /* words on the line, even those not kept */
    char *argv[CONF_ARGV_MAX];
    char buf[SPB_LINE_MAX + 1];   /* the logical line */
    char words[SPB_LINE_MAX + 1]; /* its words, unescaped, NUL-separated */
} conf_parser_t;

struct conf_directive;
typedef int (*conf_fn)(conf_parser_t *p, const struct conf_directive *d);

enum conf_kind {
    CONF_INT,   /* int field, decimal, [lo, hi] */
    CONF_LONG,  /* long field, decimal, [lo, hi] */
    CONF_SIZE,  /* uint32_t field, decimal with optional K or M, [lo, hi] */
    CONF_SIZE2, /* the same, and a power of two */
    CONF_STR,   /* char array of size bytes, non-empty */
    CONF_FUNC   /* fn does everything */
};

typedef struct conf_directive {
    const char *name;
    int min_args, max_args;
    enum conf_kind kind;
    size_t off;      /* offset of the field in spb_config_t */
    size_t size;     /* CONF_STR: size of the array */
    long lo, hi;     /* numeric kinds (and fn's that use conf_numeric) */
    size_t line_off; /* offset of an int that records the line; 0 = none */
    conf_fn fn;      /* CONF_FUNC */
} conf_directive_t;

/* ---- messages ---------------------------------------------------------- */

/* Copy s for quoting in a message: at most CONF_SHOW_MAX bytes, control
 * bytes, '\'' and bytes >= 0x7f as \xNN, "..." when shortened.  out must
 * hold SHOW_CAP bytes. */
static const char *conf_show(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;

    for (i = 0; s[i] != '\0' && i < CONF_SHOW_MAX; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (o + 5 >= cap)
            break;
        if (ch < 0x20 || ch >= 0x7f || ch == '\'') {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    if (s[i] != '\0' && o + 4 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

/* A reason from common/ may quote our input back: blank out control bytes
 * before it goes into a message. */
static const char *conf_clean(char *s)
{
    for (char *q = s; *q != '\0'; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            *q = '?';
    return s;
}

static void conf_vmsg(char *err, size_t errlen, const char *file, int line,
                      const char *fmt, va_list ap)
{
    int n;

    if (err == NULL || errlen == 0)
        return;
    n = line > 0 ? snprintf(err, errlen, "%s:%d: ", file, line)
                 : snprintf(err, errlen, "%s: ", file);
    if (n < 0 || (size_t)n >= errlen)
        return;
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

/* "FILE:LINE: message" into p->err; returns -1. */
__attribute__((format(printf, 2, 3))) static int conf_fail(conf_parser_t *p,
                                                           const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_vmsg(p->err, p->errlen, p->name, p->line, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- values ------------------------------------------------------------ */

/* Strict decimal with an optional leading '-' (so "-1" is reported as out
 * of range, not as garbage) and, if mult_ok, one K or M suffix (1024,
 * 1048576).  0; -1 not a number; -2 beyond long. */
static int conf_number(const char *s, int mult_ok, long *out)
{
    const char *q = s[0] == '-' ? s + 1 : s;
    char *end;
    long v, mult = 1;

    if (!isdigit((unsigned char)q[0]))
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (mult_ok && (*end == 'k' || *end == 'K') && end[1] == '\0') {
        mult = 1024;
        end++;
    } else if (mult_ok && (*end == 'm' || *end == 'M') && end[1] == '\0') {
        mult = 1024 * 1024;
        end++;
    }
    if (*end != '\0')
        return -1;
    if (errno == ERANGE || v > LONG_MAX / mult || v < LONG_MIN / mult)
        return -2;
    *out = v * mult;
    return 0;
}

/* p->argv[1] as d's kind of number within [d->lo, d->hi]. */
static int conf_numeric(conf_parser_t *p, const conf_directive_t *d, long *out)
{
    char show[SHOW_CAP];
    int sized = d->kind == CONF_SIZE || d->kind == CONF_SIZE2;
    long v = 0;
    int rc = conf_number(p->argv[1], sized, &v);

    if (rc == -1)
        return conf_fail(p, "%s: '%s' is not %s", d->name,
                         conf_show(p->argv[1], show, sizeof(show)),
                         sized ? "a size (bytes, or a number with K or M)"
                               : "an integer");
    if (rc == -2 || v < d->lo || v > d->hi)
        return conf_fail(p, "%s: '%s' is out of range (%ld..%ld)", d->name,
                         conf_show(p->argv[1], show, sizeof(show)), d->lo,
                         d->hi);
    if (d->kind == CONF_SIZE2 && (v & (v - 1)) != 0)
        return conf_fail(p, "%s: '%s' is not a power of two", d->name,
                         conf_show(p->argv[1], show, sizeof(show)));
    *out = v;
    return 0;
}

/* Copy a string argument into a field of cap bytes: non-empty, fitting
 * (refused, never cut). */
static int conf_string(conf_parser_t *p, const char *what, const char *s,
                       char *field, size_t cap)
{
    size_t n = strlen(s);

    if (n == 0)
        return conf_fail(p, "%s: empty argument", what);
    if (n >= cap)
        return conf_fail(p, "%s: too long (%zu bytes, at most %zu)", what, n,
                         cap - 1);
    memcpy(field, s, n + 1);
    return 0;
}

/* ---- directives with rules of their own -------------------------------- */

static int conf_listen(conf_parser_t *p, const conf_directive_t *d)
{
    /* sp_addr_parse's reasons quote the address (up to 200 bytes). */
    char show[SHOW_CAP], why[512];
    spb_config_t *c = &p->c;

    (void)d;
    if (c->nlisten >= SPB_MAX_LISTEN)
        return conf_fail(p, "too many Listen directives (at most %d)",
                         SPB_MAX_LISTEN);
    if (p->argv[1][0] == '\0')
        return conf_fail(p, "Listen: empty argument");
    why[0] = '\0';
    if (sp_addr_parse(p->argv[1], &c->listen[c->nlisten], why, sizeof(why)) !=
        0)
        return conf_fail(p, "Listen: %s",
                         why[0] != '\0'
                             ? conf_clean(why)
                             : conf_show(p->argv[1], show, sizeof(show)));
    c->listen_line[c->nlisten] = p->line;
    c->nlisten++;
    return 0;
}

static int conf_handler(conf_parser_t *p, const conf_directive_t *d)
{
    char show[SHOW_CAP];
    spb_config_t *c = &p->c;
    spb_handler_conf_t *h;

    (void)d;
    if (c->nhandlers >= SPB_MAX_HANDLERS)
        return conf_fail(p, "too many Handler directives (at most %d)",
                         SPB_MAX_HANDLERS);
    if (p->argv[1][0] != '/')
        return conf_fail(p, "Handler: prefix '%s' must start with '/'",
                         conf_show(p->argv[1], show, sizeof(show)));
    /* Two handlers for one prefix would make "longest prefix wins"
     * ambiguous: refuse rather than pick one silently. */
    for (int i = 0; i < c->nhandlers; i++)
        if (strcmp(c->handlers[i].prefix, p->argv[1]) == 0)
            return conf_fail(p,
                             "Handler: prefix '%s' is already mapped on "
                             "line %d",
                             conf_show(p->argv[1], show, sizeof(show)),
                             c->handlers[i].line);
    h = &c->handlers[c->nhandlers];
    memset(h, 0, sizeof(*h));
    if (conf_string(p, "Handler prefix", p->argv[1], h->prefix,
                    sizeof(h->prefix)) != 0 ||
        conf_string(p, "Handler spec", p->argv[2], h->spec, sizeof(h->spec)) !=
            0)
        return -1;
    if (p->argc == 4 && conf_string(p, "Handler argument", p->argv[3], h->arg,
                                    sizeof(h->arg)) != 0)
        return -1;
    h->line = p->line;
    c->nhandlers++;
    return 0;
}

static int conf_loglevel(conf_parser_t *p, const conf_directive_t *d)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"error", SPB_LOG_ERR},
                  {"warn", SPB_LOG_WARN},
                  {"info", SPB_LOG_INFO},
                  {"debug", SPB_LOG_DEBUG}};
    char show[SHOW_CAP];

    (void)d;
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (strcasecmp(p->argv[1], levels[i].name) == 0) {
            p->c.log_level = levels[i].level;
            return 0;
        }
    return conf_fail(p,
                     "LogLevel: '%s' is not one of error, warn, info, "
                     "debug",
                     conf_show(p->argv[1], show, sizeof(show)));
}

static int conf_errorlog(conf_parser_t *p, const conf_directive_t *d)
{
    /* log.c compares with "stderr" exactly: store the canonical spelling. */
    const char *v =
        strcasecmp(p->argv[1], "stderr") == 0 ? "stderr" : p->argv[1];

    return conf_string(p, d->name, v, p->c.error_log, sizeof(p->c.error_log));
}

static int conf_nodename(conf_parser_t *p, const conf_directive_t *d)
{
    /* The name travels in HELLO frames, whose strings may hold no control
     * bytes (sp_frame-t.h). */
    for (const char *s = p->argv[1]; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return conf_fail(p, "NodeName: control characters are not "
                                "allowed");
    return conf_string(p, d->name, p->argv[1], p->c.node_name,
                       sizeof(p->c.node_name));
}

static int conf_scheduling(conf_parser_t *p, const conf_directive_t *d)
{
    char show[SHOW_CAP];

    (void)d;
    if (strcasecmp(p->argv[1], "batch") == 0)
        p->c.sched_batch = 1;
    else if (strcasecmp(p->argv[1], "normal") == 0)
        p->c.sched_batch = 0;
    else
        return conf_fail(p, "Scheduling: '%s' is not one of batch, normal",
                         conf_show(p->argv[1], show, sizeof(show)));
    return 0;
}

static int conf_server_limit(conf_parser_t *p, const conf_directive_t *d)
{
    long v;

    if (conf_numeric(p, d, &v) != 0)
        return -1;
    p->c.server_limit = (int)v;
    p->server_limit_set = 1;
    return 0;
}

#define F(field) offsetof(spb_config_t, field)
#define FS(field) sizeof(((spb_config_t *)0)->field)

/* The ranges are also in docs/backend-config.md. */
static const conf_directive_t conf_directives[] = {
    {"Listen", 1, 1, CONF_FUNC, 0, 0, 0, 0, 0, conf_listen},
    {"SecretFile", 1, 1, CONF_STR, F(secret_file), FS(secret_file), 0, 0,
     F(secret_file_line), NULL},
    {"Workers", 1, 1, CONF_INT, F(workers), 0, 1, SPB_WORKERS_MAX,
     F(workers_line), NULL},
    {"ServerLimit", 1, 1, CONF_FUNC, 0, 0, 1, SPB_WORKERS_MAX,
     F(server_limit_line), conf_server_limit},
    {"MaxQueue", 1, 1, CONF_INT, F(max_queue), 0, 0, 1000000, 0, NULL},
    {"QueueTimeout", 1, 1, CONF_INT, F(queue_timeout_s), 0, 1, 86400, 0, NULL},
    {"RequestTimeout", 1, 1, CONF_INT, F(request_timeout_s), 0, 1, 86400, 0,
     NULL},
    {"MaxRequestsPerWorker", 1, 1, CONF_LONG, F(max_requests_per_worker), 0, 0,
     LONG_MAX, 0, NULL},
    {"GracefulTimeout", 1, 1, CONF_INT, F(graceful_timeout_s), 0, 0, 3600, 0,
     NULL},
    {"Handler", 2, 3, CONF_FUNC, 0, 0, 0, 0, 0, conf_handler},
    {"CGITimeout", 1, 1, CONF_INT, F(cgi_timeout_s), 0, 1, 86400, 0, NULL},
    {"MaxPayload", 1, 1, CONF_SIZE, F(max_payload), 0, SP_FRAME_MAX_PAYLOAD_MIN,
     SP_FRAME_MAX_PAYLOAD_CEIL, 0, NULL},
    {"InitialWindow", 1, 1, CONF_SIZE, F(initial_window), 0, SPB_WINDOW_MIN,
     SP_FRAME_WINDOW_MAX, 0, NULL},
    {"SlotBufferSize", 1, 1, CONF_SIZE2, F(slot_buffer_size), 0,
     SPB_SLOT_BUFFER_MIN, SPB_SLOT_BUFFER_MAX, 0, NULL},
    {"MaxLinks", 1, 1, CONF_INT, F(max_links), 0, 1, 65536, 0, NULL},
    {"PingInterval", 1, 1, CONF_INT, F(ping_interval_s), 0, 1, 3600, 0, NULL},
    {"PidFile", 1, 1, CONF_STR, F(pid_file), FS(pid_file), 0, 0, 0, NULL},
    {"ErrorLog", 1, 1, CONF_FUNC, 0, 0, 0, 0, 0, conf_errorlog},
    {"LogLevel", 1, 1, CONF_FUNC, 0, 0, 0, 0, 0, conf_loglevel},
    {"User", 1, 1, CONF_STR, F(user), FS(user), 0, 0, 0, NULL},
    {"Group", 1, 1, CONF_STR, F(group), FS(group), 0, 0, 0, NULL},
    {"NodeName", 1, 1, CONF_FUNC, 0, 0, 0, 0, 0, conf_nodename},
    {"Scheduling", 1, 1, CONF_FUNC, 0, 0, 0, 0, 0, conf_scheduling},
    {"PollTime", 1, 1, CONF_INT, F(poll_us), 0, 0, SPB_POLL_US_MAX, 0, NULL},
};

#undef F
#undef FS

/* Apply the directive on the current line (p->argc > 0). */
static int conf_directive(conf_parser_t *p)
{
    char show[SHOW_CAP];
    const conf_directive_t *d = NULL;
    char *base = (char *)&p->c;
    int nargs = p->argc - 1;
    long v;

    for (size_t i = 0; i < sizeof(conf_directives) / sizeof(*d); i++)
        if (strcasecmp(p->argv[0], conf_directives[i].name) == 0) {
            d = &conf_directives[i];
            break;
        }
    if (d == NULL)
        return conf_fail(p, "unknown directive '%s'",
                         conf_show(p->argv[0], show, sizeof(show)));
    if (nargs < d->min_args || nargs > d->max_args) {
        if (d->min_args == d->max_args)
            return conf_fail(p, "%s takes %d argument%s, got %d", d->name,
                             d->min_args, d->min_args == 1 ? "" : "s", nargs);
        return conf_fail(p, "%s takes %d or %d arguments, got %d", d->name,
                         d->min_args, d->max_args, nargs);
    }

    switch (d->kind) {
    case CONF_INT:
        if (conf_numeric(p, d, &v) != 0)
            return -1;
        *(int *)(base + d->off) = (int)v;
        break;
    case CONF_LONG:
        if (conf_numeric(p, d, &v) != 0)
            return -1;
        *(long *)(base + d->off) = v;
        break;
    case CONF_SIZE:
    case CONF_SIZE2:
        if (conf_numeric(p, d, &v) != 0)
            return -1;
        *(uint32_t *)(base + d->off) = (uint32_t)v;
        break;
    case CONF_STR:
        if (conf_string(p, d->name, p->argv[1], base + d->off, d->size) != 0)
            return -1;
        break;
    case CONF_FUNC:
        if (d->fn(p, d) != 0)
            return -1;
        break;
    }
    if (d->line_off != 0)
        *(int *)(base + d->line_off) = p->line;
    return 0;
}

/* ---- lines and words --------------------------------------------------- */

/* The next logical line into p->buf, p->line set to its first physical
 * line.  1 = a line, 0 = end of text, -1 = error. */
static int conf_next_line(conf_parser_t *p, const char *text, size_t len,
                          size_t *pos, int *lineno)
{
    size_t n = 0;
    int first = 0;

    if (*pos >= len)
        return 0;
    for (;;) {
        const char *s = text + *pos;
        size_t rest = len - *pos;
        const char *nl = memchr(s, '\n', rest);
        size_t plen = nl != NULL ? (size_t)(nl - s) : rest;
        int cont;

        (*lineno)++;
        if (first == 0)
            first = *lineno;
        *pos += plen + (nl != NULL);
        if (memchr(s, '\0', plen) != NULL) {
            p->line = *lineno;
            return conf_fail(p, "NUL byte in the file");
        }
        if (plen > 0 && s[plen - 1] == '\r')
            plen--;
        cont = plen > 0 && s[plen - 1] == '\\';
        if (cont)
            plen--;
        if (plen > SPB_LINE_MAX - n) {
            p->line = first;
            return conf_fail(p, "line too long (more than %d bytes)",
                             SPB_LINE_MAX);
        }
        memcpy(p->buf + n, s, plen);
        n += plen;
        if (!cont || *pos >= len)
            break;
    }
    p->buf[n] = '\0';
    p->line = first;
    return 1;
}

/* Split p->buf into p->argv/p->argc (see the top of the file). */
static int conf_split(conf_parser_t *p)
{
    char show[SHOW_CAP];
    const char *s = p->buf;
    char *w = p->words;

    p->argc = 0;
    for (;;) {
        char *start = w;

        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0' || *s == '#')
            break;
        if (*s == '"') {
            s++;
            for (;;) {
                if (*s == '\0')
                    return conf_fail(p, "unterminated quoted string");
                if (*s == '"') {
                    s++;
                    break;
                }
                if (*s == '\\') {
                    if (s[1] == '\0')
                        return conf_fail(p, "unterminated quoted string");
                    if (s[1] != '"' && s[1] != '\\') {
                        char esc[2] = {s[1], '\0'};
                        return conf_fail(p,
                                         "unknown escape '\\%s' in a quoted "
                                         "string (only \\\" and \\\\)",
                                         conf_show(esc, show, sizeof(show)));
                    }
                    s++;
                }
                *w++ = *s++;
            }
            if (*s != '\0' && *s != ' ' && *s != '\t')
                return conf_fail(p, "text after a closing quote (a blank "
                                    "must follow it)");
        } else {
            while (*s != '\0' && *s != ' ' && *s != '\t') {
                if (*s == '"')
                    return conf_fail(p, "'\"' inside an unquoted argument "
                                        "(quote the whole argument)");
                *w++ = *s++;
            }
        }
        *w++ = '\0';
        if (p->argc < CONF_ARGV_MAX)
            p->argv[p->argc] = start;
        p->argc++;
    }
    return 0;
}

/* ---- entry points ------------------------------------------------------ */

void spb_config_defaults(spb_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->workers = 4;
    c->server_limit = 64; /* max(64, Workers) after a parse */
    c->max_queue = 256;
    c->queue_timeout_s = 30;
    c->request_timeout_s = 300;
    c->max_requests_per_worker = 0;
    c->graceful_timeout_s = 10;
    c->cgi_timeout_s = 60;
    c->max_payload = SP_FRAME_MAX_PAYLOAD_DEFAULT;
    c->initial_window = 262144;
    c->slot_buffer_size = 262144;
    c->max_links = 1024;
    c->ping_interval_s = 30;
    c->sched_batch = 1;
    c->poll_us = 200;
    strcpy(c->error_log, "stderr");
    c->log_level = SPB_LOG_WARN;
    /* gethostname() may cut a long name without a NUL: the last byte
     * stays 0. */
    if (gethostname(c->node_name, sizeof(c->node_name) - 1) != 0 ||
        c->node_name[0] == '\0')
        strcpy(c->node_name, "localhost");
    c->node_name[sizeof(c->node_name) - 1] = '\0';
}

int spb_config_parse(spb_config_t *c, const char *name, const char *text,
                     size_t len, char *err, size_t errlen)
{
    conf_parser_t *p;
    size_t pos = 0;
    int lineno = 0, rc = -1, r;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (name == NULL)
        name = "(config)";
    /* ~50 KiB of buffers plus the config: too much for a thread's stack. */
    p = malloc(sizeof(*p));
    if (p == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: out of memory", name);
        return -1;
    }
    spb_config_defaults(&p->c);
    /* c->file only names the file in messages: a longer name is cut. */
    snprintf(p->c.file, sizeof(p->c.file), "%s", name);
    p->name = name;
    p->err = err;
    p->errlen = errlen;
    p->line = 0;
    p->server_limit_set = 0;

    if (len > SPB_FILE_MAX) {
        conf_fail(p, "file too large (more than %d bytes)", SPB_FILE_MAX);
        goto done;
    }
    while ((r = conf_next_line(p, text, len, &pos, &lineno)) > 0) {
        if (conf_split(p) != 0)
            goto done;
        if (p->argc > 0 && conf_directive(p) != 0)
            goto done;
    }
    if (r < 0)
        goto done;
    if (!p->server_limit_set)
        p->c.server_limit = p->c.workers > 64 ? p->c.workers : 64;
    memcpy(c, &p->c, sizeof(*c));
    rc = 0;
done:
    free(p);
    return rc;
}

int spb_config_load(spb_config_t *c, const char *path, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int fd, rc = -1;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    /* One byte more than allowed, to tell "exactly the limit" from "more". */
    buf = malloc(SPB_FILE_MAX + 1);
    if (buf == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    while (len < SPB_FILE_MAX + 1) {
        ssize_t n = read(fd, buf + len, SPB_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "%s: cannot read: %s", path,
                         strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    rc = spb_config_parse(c, path, buf, len, err, errlen);
fail:
    free(buf);
    close(fd);
    return rc;
}

/* ---- cross-checks ------------------------------------------------------ */

__attribute__((format(printf, 5, 6))) static int
check_fail(const spb_config_t *c, char *err, size_t errlen, int line,
           const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_vmsg(err, errlen, c->file[0] != '\0' ? c->file : "(config)", line, fmt,
              ap);
    va_end(ap);
    return -1;
}

/* The form of a handler spec only: the loader checks that targets exist. */
static int check_handler(const spb_config_t *c, const spb_handler_conf_t *h,
                         char *err, size_t errlen)
{
    static const char *const builtins[] = {"hello", "echo", "session-demo"};
    char show[SHOW_CAP];
    const char *s = h->spec;

    if (strncmp(s, "builtin:", 8) == 0) {
        for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
            if (strcmp(s + 8, builtins[i]) == 0)
                return 0;
        return check_fail(c, err, errlen, h->line,
                          "Handler: unknown builtin '%s' (known: hello, "
                          "echo, session-demo)",
                          conf_show(s + 8, show, sizeof(show)));
    }
    if (strncmp(s, "plugin:", 7) == 0) {
        if (s[7] != '/')
            return check_fail(c, err, errlen, h->line,
                              "Handler: plugin path '%s' is not absolute",
                              conf_show(s + 7, show, sizeof(show)));
        return 0;
    }
    if (strncmp(s, "cgi:", 4) == 0) {
        if (s[4] != '/')
            return check_fail(c, err, errlen, h->line,
                              "Handler: cgi directory '%s' is not absolute",
                              conf_show(s + 4, show, sizeof(show)));
        return 0;
    }
    return check_fail(c, err, errlen, h->line,
                      "Handler: '%s' is not builtin:NAME, plugin:/path.so "
                      "or cgi:/dir",
                      conf_show(s, show, sizeof(show)));
}

int spb_config_check(const spb_config_t *c, char *err, size_t errlen)
{
    char show[SHOW_CAP], addr[512];

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (c->nlisten == 0)
        return check_fail(c, err, errlen, 0,
                          "no Listen directive (at least one is required)");
    if (c->workers > c->server_limit) {
        if (c->workers_line > 0)
            return check_fail(c, err, errlen, c->workers_line,
                              "Workers %d is more than ServerLimit %d",
                              c->workers, c->server_limit);
        return check_fail(c, err, errlen, c->server_limit_line,
                          "ServerLimit %d is less than Workers (default %d)",
                          c->server_limit, c->workers);
    }
    for (int i = 0; i < c->nlisten; i++)
        if (!sp_addr_is_local(&c->listen[i]) && c->secret_file[0] == '\0')
            return check_fail(
                c, err, errlen, c->listen_line[i],
                "Listen %s is not on loopback and needs SecretFile",
                conf_show(sp_addr_format(&c->listen[i], addr, sizeof(addr)),
                          show, sizeof(show)));
    if (c->secret_file[0] != '\0') {
        /* Loaded only to prove it loads; the daemon loads it again when
         * it starts serving, so a rotated secret is picked up on reload. */
        uint8_t secret[SP_SECRET_MAX];
        char why[512];
        size_t n = 0;
        int rc;

        why[0] = '\0';
        rc = sp_auth_load_secret(c->secret_file, secret, sizeof(secret), &n,
                                 why, sizeof(why));
        explicit_bzero(secret, sizeof(secret));
        if (rc != 0 && why[0] == '\0')
            snprintf(why, sizeof(why), "SecretFile: %s", sp_strerror(rc));
        if (rc != 0)
            return check_fail(c, err, errlen, c->secret_file_line, "%s",
                              conf_clean(why));
    }
    for (int i = 0; i < c->nhandlers; i++)
        if (check_handler(c, &c->handlers[i], err, errlen) != 0)
            return -1;
    return 0;
}
