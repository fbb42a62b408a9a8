/*
 * fuzz_config.c - libFuzzer target for slotproxy-backend's configuration
 * parser (spb_config_parse, then spb_config_check on what parsed).
 *
 * Beyond "no crash, no sanitizer report" it checks the parser's promises:
 *  - the result is 0 or -1;
 *  - on -1 the config is byte-for-byte unchanged (nothing half-applied)
 *    and the message is one line starting with the file name, with no
 *    control byte in it (a hostile file cannot forge log lines);
 *  - on 0 every value is within its documented range and every string is
 *    terminated inside its array.
 *
 * Name resolution is replaced (getaddrinfo below) by a numeric-only
 * version: the fuzzer soon writes "Listen tcp://some-name:1", and a fuzz
 * run must neither wait for nor talk to a DNS server.  Interposing works
 * because a definition in the executable wins over libc's (and over the
 * sanitizer runtime's weak interceptor).
 *
 * Build (see the Makefile's fuzz target):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -Icommon -Islotproxy-backend \
 *     -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_config.c \
 *     slotproxy-backend/config.c common/\*.c -lcrypto -o fuzz_config
 * Seeds: tests/fuzz/corpus/config/.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"

struct fake_ai {
    struct addrinfo ai;
    struct sockaddr_storage ss;
};

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
    int family = hints != NULL ? hints->ai_family : AF_UNSPEC;
    unsigned long port = service != NULL ? strtoul(service, NULL, 10) : 0;
    struct fake_ai *f;
    struct sockaddr_in *in;
    struct sockaddr_in6 *in6;

    if (node == NULL || port > 65535)
        return EAI_NONAME;
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return EAI_MEMORY;
    in = (struct sockaddr_in *)&f->ss;
    in6 = (struct sockaddr_in6 *)&f->ss;
    if (family != AF_INET6 && inet_pton(AF_INET, node, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        f->ai.ai_family = AF_INET;
        f->ai.ai_addrlen = sizeof(*in);
    } else if (family != AF_INET &&
               inet_pton(AF_INET6, node, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        f->ai.ai_family = AF_INET6;
        f->ai.ai_addrlen = sizeof(*in6);
    } else {
        free(f);
        return EAI_NONAME;
    }
    f->ai.ai_socktype = SOCK_STREAM;
    f->ai.ai_addr = (struct sockaddr *)&f->ss;
    *res = &f->ai;
    return 0;
}

void freeaddrinfo(struct addrinfo *ai)
{
    free(ai); /* one block per list of one, from getaddrinfo above */
}

#define FUZZ_NAME "fuzz.conf"

static void require(int ok, const char *what, const char *err)
{
    if (!ok) {
        fprintf(stderr, "fuzz_config: %s (err \"%s\")\n", what, err);
        abort();
    }
}

static int terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static void check_message(const char *err)
{
    require(strncmp(err, FUZZ_NAME ":", sizeof(FUZZ_NAME)) == 0,
            "message does not start with the file name", err);
    for (const char *s = err; *s != '\0'; s++)
        require((unsigned char)*s >= 0x20 && *s != 0x7f,
                "control byte in the message", err);
}

static void check_values(const spb_config_t *c)
{
    require(c->nlisten >= 0 && c->nlisten <= SPB_MAX_LISTEN, "nlisten", "");
    require(c->nhandlers >= 0 && c->nhandlers <= SPB_MAX_HANDLERS, "nhandlers",
            "");
    require(c->workers >= 1 && c->workers <= 4096, "workers", "");
    require(c->server_limit >= 1 && c->server_limit <= 4096, "server_limit",
            "");
    require(c->server_limit_line != 0 || c->server_limit >= c->workers,
            "default ServerLimit below Workers", "");
    require(c->max_queue >= 0, "max_queue", "");
    require(c->queue_timeout_s >= 1 && c->request_timeout_s >= 1 &&
                c->cgi_timeout_s >= 1 && c->ping_interval_s >= 1 &&
                c->graceful_timeout_s >= 0,
            "a timeout", "");
    require(c->max_requests_per_worker >= 0, "max_requests", "");
    require(c->max_payload >= 4096 && c->max_payload <= 16u * 1024 * 1024,
            "max_payload", "");
    require(c->initial_window >= 4096 && c->initial_window <= 0x7fffffffu,
            "initial_window", "");
    require(c->slot_buffer_size >= 65536 &&
                c->slot_buffer_size <= 64u * 1024 * 1024 &&
                (c->slot_buffer_size & (c->slot_buffer_size - 1)) == 0,
            "slot_buffer_size", "");
    require(c->max_links >= 1 && c->max_links <= 65536, "max_links", "");
    require(c->log_level == SPB_LOG_ERR || c->log_level == SPB_LOG_WARN ||
                c->log_level == SPB_LOG_INFO || c->log_level == SPB_LOG_DEBUG,
            "log_level", "");
    require(terminated(c->file, sizeof(c->file)) &&
                terminated(c->secret_file, sizeof(c->secret_file)) &&
                terminated(c->pid_file, sizeof(c->pid_file)) &&
                terminated(c->error_log, sizeof(c->error_log)) &&
                terminated(c->user, sizeof(c->user)) &&
                terminated(c->group, sizeof(c->group)) &&
                terminated(c->node_name, sizeof(c->node_name)),
            "unterminated string", "");
    for (int i = 0; i < c->nhandlers; i++) {
        const spb_handler_conf_t *h = &c->handlers[i];
        require(terminated(h->prefix, sizeof(h->prefix)) &&
                    terminated(h->spec, sizeof(h->spec)) &&
                    terminated(h->arg, sizeof(h->arg)),
                "unterminated handler string", "");
        require(h->prefix[0] == '/' && h->spec[0] != '\0' && h->line >= 1,
                "handler fields", "");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Static: a config is ~160 KiB. */
    static spb_config_t c, before;
    char err[1024];
    int rc;

    memset(&c, 0x5a, sizeof(c));
    memcpy(&before, &c, sizeof(c));
    rc = spb_config_parse(&c, FUZZ_NAME, (const char *)data, size, err,
                          sizeof(err));
    require(rc == 0 || rc == -1, "result is neither 0 nor -1", "");
    if (rc == -1) {
        check_message(err);
        require(memcmp(&c, &before, sizeof(c)) == 0,
                "config changed by a failed parse", err);
        return 0;
    }
    require(err[0] == '\0', "message on success", err);
    check_values(&c);
    /* Never open a path the fuzzer made up. */
    c.secret_file[0] = '\0';
    rc = spb_config_check(&c, err, sizeof(err));
    require(rc == 0 || rc == -1, "check result is neither 0 nor -1", "");
    if (rc == -1)
        check_message(err);
    return 0;
}
