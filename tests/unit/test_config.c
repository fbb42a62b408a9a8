/*
 * test_config.c - slotproxy-backend's configuration parser (config.c):
 * every directive with a value and with its default, the syntax (quotes,
 * escapes, comments, continuations, CRLF), every refusal with its exact
 * "FILE:LINE: message", the cross-checks of spb_config_check, and seeded
 * garbage that must never crash.
 *
 * Nothing here needs the network: tcp addresses are numeric, and the
 * garbage generators never produce a "tcp://" listener (a name would go to
 * the resolver).
 */
#include "sp_unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* The limits documented in docs/backend-config.md (config.c keeps them
 * private). */
#define LINE_MAX_BYTES 16384
#define FILE_MAX_BYTES (1024 * 1024)

static char errbuf[1024];

static int parse_n(spb_config_t *c, const char *text, size_t len)
{
    memset(errbuf, 0x55, sizeof(errbuf));
    return spb_config_parse(c, "t.conf", text, len, errbuf, sizeof(errbuf));
}

static int parse(spb_config_t *c, const char *text)
{
    return parse_n(c, text, strlen(text));
}

/* Parse text that must succeed. */
static void parse_ok(spb_config_t *c, const char *text)
{
    int rc = parse(c, text);
    ck_assert_msg(rc == 0, "parse failed: %s", errbuf);
    ck_assert_str_eq(errbuf, "");
}

/* Parse text that must fail with exactly want; the config is untouched. */
static void expect_error_n(const char *text, size_t len, const char *want)
{
    static spb_config_t c, pattern;
    memset(&c, 0xa5, sizeof(c));
    memset(&pattern, 0xa5, sizeof(pattern));
    ck_assert_int_eq(parse_n(&c, text, len), -1);
    ck_assert_str_eq(errbuf, want);
    ck_assert_msg(memcmp(&c, &pattern, sizeof(c)) == 0,
                  "the config changed on failure");
}

static void expect_error(const char *text, const char *want)
{
    expect_error_n(text, strlen(text), want);
}

/* Parse text that must succeed, then check it and expect the error want
 * (NULL: expect success). */
static void expect_check(const char *text, const char *want)
{
    spb_config_t c;
    parse_ok(&c, text);
    memset(errbuf, 0x55, sizeof(errbuf));
    int rc = spb_config_check(&c, errbuf, sizeof(errbuf));
    if (want == NULL) {
        ck_assert_msg(rc == 0, "check failed: %s", errbuf);
        ck_assert_str_eq(errbuf, "");
    } else {
        ck_assert_int_eq(rc, -1);
        ck_assert_str_eq(errbuf, want);
    }
}

static void assert_defaults(const spb_config_t *c)
{
    char host[64] = {0};

    ck_assert_int_eq(c->nlisten, 0);
    ck_assert_str_eq(c->secret_file, "");
    ck_assert_int_eq(c->workers, 4);
    ck_assert_int_eq(c->server_limit, 64);
    ck_assert_int_eq(c->max_queue, 256);
    ck_assert_int_eq(c->queue_timeout_s, 30);
    ck_assert_int_eq(c->request_timeout_s, 300);
    ck_assert_int_eq(c->max_requests_per_worker, 0);
    ck_assert_int_eq(c->graceful_timeout_s, 10);
    ck_assert_int_eq(c->nhandlers, 0);
    ck_assert_int_eq(c->cgi_timeout_s, 60);
    ck_assert_uint_eq(c->max_payload, 65536);
    ck_assert_uint_eq(c->initial_window, 262144);
    ck_assert_uint_eq(c->slot_buffer_size, 262144);
    ck_assert_int_eq(c->max_links, 1024);
    ck_assert_int_eq(c->ping_interval_s, 30);
    ck_assert_str_eq(c->pid_file, "");
    ck_assert_str_eq(c->error_log, "stderr");
    ck_assert_int_eq(c->log_level, SPB_LOG_WARN);
    ck_assert_str_eq(c->user, "");
    ck_assert_str_eq(c->group, "");
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
        strcpy(host, "localhost");
    ck_assert_str_eq(c->node_name, host);
    ck_assert_int_eq(c->secret_file_line, 0);
    ck_assert_int_eq(c->workers_line, 0);
    ck_assert_int_eq(c->server_limit_line, 0);
    ck_assert_int_eq(c->sched_batch, 1);
    ck_assert_int_eq(c->poll_us, 200);
}

/* ---- values and defaults ----------------------------------------------- */

START_TEST(config_defaults)
{
    spb_config_t c;

    spb_config_defaults(&c);
    assert_defaults(&c);
    ck_assert_str_eq(c.file, "");

    parse_ok(&c, "");
    assert_defaults(&c);
    ck_assert_str_eq(c.file, "t.conf");

    parse_ok(&c, "# only a comment\n\n   \n\t# another\n");
    assert_defaults(&c);
}
END_TEST

START_TEST(config_every_directive)
{
    spb_config_t c;
    const char *text =
        "Listen tcp://127.0.0.1:8081\n"
        "Listen unix:/tmp/spb-test.sock\n"
        "SecretFile /etc/slotproxy/secret\n"
        "Workers 8\n"
        "ServerLimit 128\n"
        "MaxQueue 0\n"
        "QueueTimeout 5\n"
        "RequestTimeout 60\n"
        "MaxRequestsPerWorker 1000\n"
        "GracefulTimeout 0\n"
        "Handler /hello builtin:hello\n"
        "Handler /app plugin:/usr/lib/slotproxy/app.so \"arg one\"\n"
        "Handler /cgi-bin cgi:/var/www/cgi\n"
        "CGITimeout 15\n"
        "MaxPayload 1M\n"
        "InitialWindow 512K\n"
        "SlotBufferSize 1M\n"
        "MaxLinks 16\n"
        "PingInterval 7\n"
        "PidFile /run/spb.pid\n"
        "ErrorLog /var/log/spb.log\n"
        "LogLevel debug\n"
        "User nobody\n"
        "Group nogroup\n"
        "NodeName node-a\n"
        "Scheduling normal\n"
        "PollTime 50\n";

    parse_ok(&c, text);
    ck_assert_int_eq(c.nlisten, 2);
    ck_assert_int_eq(c.listen[0].kind, SP_ADDR_TCP);
    ck_assert_str_eq(c.listen[0].host, "127.0.0.1");
    ck_assert_int_eq(c.listen[0].port, 8081);
    ck_assert_int_eq(c.listen_line[0], 1);
    ck_assert_int_eq(c.listen[1].kind, SP_ADDR_UNIX);
    ck_assert_str_eq(c.listen[1].path, "/tmp/spb-test.sock");
    ck_assert_int_eq(c.listen_line[1], 2);
    ck_assert_str_eq(c.secret_file, "/etc/slotproxy/secret");
    ck_assert_int_eq(c.secret_file_line, 3);
    ck_assert_int_eq(c.workers, 8);
    ck_assert_int_eq(c.workers_line, 4);
    ck_assert_int_eq(c.server_limit, 128);
    ck_assert_int_eq(c.server_limit_line, 5);
    ck_assert_int_eq(c.max_queue, 0);
    ck_assert_int_eq(c.queue_timeout_s, 5);
    ck_assert_int_eq(c.request_timeout_s, 60);
    ck_assert_int_eq(c.max_requests_per_worker, 1000);
    ck_assert_int_eq(c.graceful_timeout_s, 0);
    ck_assert_int_eq(c.nhandlers, 3);
    ck_assert_str_eq(c.handlers[0].prefix, "/hello");
    ck_assert_str_eq(c.handlers[0].spec, "builtin:hello");
    ck_assert_str_eq(c.handlers[0].arg, "");
    ck_assert_int_eq(c.handlers[0].line, 11);
    ck_assert_str_eq(c.handlers[1].prefix, "/app");
    ck_assert_str_eq(c.handlers[1].spec, "plugin:/usr/lib/slotproxy/app.so");
    ck_assert_str_eq(c.handlers[1].arg, "arg one");
    ck_assert_int_eq(c.handlers[1].line, 12);
    ck_assert_str_eq(c.handlers[2].prefix, "/cgi-bin");
    ck_assert_str_eq(c.handlers[2].spec, "cgi:/var/www/cgi");
    ck_assert_int_eq(c.handlers[2].line, 13);
    ck_assert_int_eq(c.cgi_timeout_s, 15);
    ck_assert_uint_eq(c.max_payload, 1048576);
    ck_assert_uint_eq(c.initial_window, 524288);
    ck_assert_uint_eq(c.slot_buffer_size, 1048576);
    ck_assert_int_eq(c.max_links, 16);
    ck_assert_int_eq(c.ping_interval_s, 7);
    ck_assert_str_eq(c.pid_file, "/run/spb.pid");
    ck_assert_str_eq(c.error_log, "/var/log/spb.log");
    ck_assert_int_eq(c.log_level, SPB_LOG_DEBUG);
    ck_assert_str_eq(c.user, "nobody");
    ck_assert_str_eq(c.group, "nogroup");
    ck_assert_str_eq(c.node_name, "node-a");
    ck_assert_int_eq(c.sched_batch, 0);
    ck_assert_int_eq(c.poll_us, 50);
    ck_assert_str_eq(c.file, "t.conf");
}
END_TEST

START_TEST(config_numbers)
{
    spb_config_t c;

    /* Range edges are accepted; sizes take K and M in either case. */
    parse_ok(&c, "MaxPayload 4096\nInitialWindow 2047M\n"
                 "SlotBufferSize 64k\nMaxRequestsPerWorker "
                 "9223372036854775807\n");
    ck_assert_uint_eq(c.max_payload, 4096);
    ck_assert_uint_eq(c.initial_window, 2047u * 1024 * 1024);
    ck_assert_uint_eq(c.slot_buffer_size, 65536);
    ck_assert_int_eq(c.max_requests_per_worker, 9223372036854775807L);
    parse_ok(&c, "MaxPayload 16M\nSlotBufferSize 64M\nWorkers 4096\n"
                 "InitialWindow 2147483647\n");
    ck_assert_uint_eq(c.max_payload, 16u * 1024 * 1024);
    ck_assert_uint_eq(c.slot_buffer_size, 64u * 1024 * 1024);
    ck_assert_int_eq(c.workers, 4096);
    ck_assert_uint_eq(c.initial_window, 2147483647u);
    parse_ok(&c, "Workers 007\nMaxQueue 1000000\n");
    ck_assert_int_eq(c.workers, 7);
    ck_assert_int_eq(c.max_queue, 1000000);

    /* LogLevel: every name, any case. */
    parse_ok(&c, "LogLevel ERROR");
    ck_assert_int_eq(c.log_level, SPB_LOG_ERR);
    parse_ok(&c, "LogLevel Warn");
    ck_assert_int_eq(c.log_level, SPB_LOG_WARN);
    parse_ok(&c, "LogLevel info");
    ck_assert_int_eq(c.log_level, SPB_LOG_INFO);
    parse_ok(&c, "LogLevel debug");
    ck_assert_int_eq(c.log_level, SPB_LOG_DEBUG);

    /* Scheduling: batch unless told otherwise, any case. */
    parse_ok(&c, "Workers 2\n");
    ck_assert_int_eq(c.sched_batch, 1);
    parse_ok(&c, "Scheduling NORMAL\n");
    ck_assert_int_eq(c.sched_batch, 0);
    parse_ok(&c, "Scheduling normal\nScheduling Batch\n");
    ck_assert_int_eq(c.sched_batch, 1);

    /* PollTime: microseconds, 200 unless told otherwise, 0..10000 (0:
     * never poll); the last one wins. */
    parse_ok(&c, "Workers 2\n");
    ck_assert_int_eq(c.poll_us, 200);
    parse_ok(&c, "PollTime 0\n");
    ck_assert_int_eq(c.poll_us, 0);
    parse_ok(&c, "PollTime 200\n");
    ck_assert_int_eq(c.poll_us, 200);
    parse_ok(&c, "polltime 10000\n");
    ck_assert_int_eq(c.poll_us, 10000);
    parse_ok(&c, "PollTime 10000\nPollTime 1\n");
    ck_assert_int_eq(c.poll_us, 1);
}
END_TEST

START_TEST(config_server_limit_default)
{
    spb_config_t c;

    parse_ok(&c, "Workers 100\n");
    ck_assert_int_eq(c.server_limit, 100);
    ck_assert_int_eq(c.server_limit_line, 0);
    parse_ok(&c, "Workers 8\n");
    ck_assert_int_eq(c.server_limit, 64);
    parse_ok(&c, "ServerLimit 10\nWorkers 8\n");
    ck_assert_int_eq(c.server_limit, 10);
    ck_assert_int_eq(c.server_limit_line, 1);
    /* Given explicitly, it stays even below Workers (check() refuses). */
    parse_ok(&c, "Workers 100\nServerLimit 32\n");
    ck_assert_int_eq(c.server_limit, 32);
    ck_assert_int_eq(c.workers, 100);
}
END_TEST

START_TEST(config_case_and_last_wins)
{
    spb_config_t c;

    parse_ok(&c, "wOrKeRs 5\nWORKERS 6\nloglevel INFO\nerrorlog STDERR\n"
                 "PidFile /a\npidfile /b\nLISTEN unix:/tmp/a.sock\n"
                 "listen unix:/tmp/b.sock\n");
    ck_assert_int_eq(c.workers, 6);
    ck_assert_int_eq(c.workers_line, 2);
    ck_assert_int_eq(c.log_level, SPB_LOG_INFO);
    ck_assert_str_eq(c.error_log, "stderr");
    ck_assert_str_eq(c.pid_file, "/b");
    /* Listen accumulates. */
    ck_assert_int_eq(c.nlisten, 2);
    ck_assert_str_eq(c.listen[0].path, "/tmp/a.sock");
    ck_assert_str_eq(c.listen[1].path, "/tmp/b.sock");
    ck_assert_int_eq(c.listen_line[1], 8);
}
END_TEST

/* ---- syntax ------------------------------------------------------------ */

START_TEST(config_quoting)
{
    spb_config_t c;

    parse_ok(&c, "PidFile \"/tmp/a b\\\"c\\\\d\"\n");
    ck_assert_str_eq(c.pid_file, "/tmp/a b\"c\\d");
    parse_ok(&c, "NodeName \"x # y\"\n");
    ck_assert_str_eq(c.node_name, "x # y");
    /* '#' inside a word is not a comment; after blanks it is. */
    parse_ok(&c, "User a#b\nWorkers 5 # five\nGroup g\t#tab comment\n");
    ck_assert_str_eq(c.user, "a#b");
    ck_assert_int_eq(c.workers, 5);
    ck_assert_str_eq(c.group, "g");
    /* Single quotes and backslashes outside double quotes are literal. */
    parse_ok(&c, "User 'x'\nGroup a\\b\n");
    ck_assert_str_eq(c.user, "'x'");
    ck_assert_str_eq(c.group, "a\\b");
    /* Tabs separate; indentation is allowed. */
    parse_ok(&c, "\t  Workers\t\t7  \n");
    ck_assert_int_eq(c.workers, 7);
    /* A quoted prefix with a blank and a quoted argument with quotes. */
    parse_ok(&c, "Handler \"/my app\" builtin:echo \"with \\\"q\\\"\"\n");
    ck_assert_str_eq(c.handlers[0].prefix, "/my app");
    ck_assert_str_eq(c.handlers[0].spec, "builtin:echo");
    ck_assert_str_eq(c.handlers[0].arg, "with \"q\"");
    /* The directive name may be quoted too (it is just the first word). */
    parse_ok(&c, "\"Workers\" \"9\"\n");
    ck_assert_int_eq(c.workers, 9);
    /* A value that fills its field exactly (63 bytes of 64). */
    parse_ok(&c,
             "User "
             "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"
             "\n");
    ck_assert_uint_eq(strlen(c.user), 63);
}
END_TEST

START_TEST(config_continuation)
{
    spb_config_t c;

    /* Joined with nothing in between; the directive's line is the first. */
    parse_ok(&c, "Handler /x \\\n  builtin:hello\nWorkers 9\n");
    ck_assert_str_eq(c.handlers[0].spec, "builtin:hello");
    ck_assert_int_eq(c.handlers[0].line, 1);
    ck_assert_int_eq(c.workers_line, 3);
    parse_ok(&c, "Work\\\ners 11\n");
    ck_assert_int_eq(c.workers, 11);
    /* Inside quotes. */
    parse_ok(&c, "NodeName \"a \\\nb\"\n");
    ck_assert_str_eq(c.node_name, "a b");
    /* CRLF files, with and without continuations. */
    parse_ok(&c, "Workers 3\r\nMaxLinks 5\r\nQueueTimeout \\\r\n 6\r\n");
    ck_assert_int_eq(c.workers, 3);
    ck_assert_int_eq(c.max_links, 5);
    ck_assert_int_eq(c.queue_timeout_s, 6);
    /* A comment ending in a backslash swallows the next line (httpd). */
    parse_ok(&c, "# comment \\\nWorkers 12\nMaxLinks 3\n");
    ck_assert_int_eq(c.workers, 4);
    ck_assert_int_eq(c.max_links, 3);
    /* A backslash on the last line, and no final newline. */
    parse_ok(&c, "Workers 13 \\");
    ck_assert_int_eq(c.workers, 13);
    parse_ok(&c, "Workers 14");
    ck_assert_int_eq(c.workers, 14);
    /* Line numbers go on counting physical lines. */
    expect_error("Workers \\\n 4\n\nFoo\n",
                 "t.conf:4: unknown directive 'Foo'");
    expect_error("Workers \\\n 4 \\\n 5\n", "t.conf:1: Workers takes 1 "
                                            "argument, got 2");
}
END_TEST

/* ---- refusals ---------------------------------------------------------- */

START_TEST(config_errors)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"Workers 4\n\nFoo bar\n", "t.conf:3: unknown directive 'Foo'"},
        {"Fo\001o 1\n", "t.conf:1: unknown directive 'Fo\\x01o'"},
        {"Workers abc\n", "t.conf:1: Workers: 'abc' is not an integer"},
        {"Workers 4x\n", "t.conf:1: Workers: '4x' is not an integer"},
        {"Workers +4\n", "t.conf:1: Workers: '+4' is not an integer"},
        {"Workers 0x10\n", "t.conf:1: Workers: '0x10' is not an integer"},
        {"Workers 4K\n", "t.conf:1: Workers: '4K' is not an integer"},
        {"Workers \"\"\n", "t.conf:1: Workers: '' is not an integer"},
        {"Workers \" 4\"\n", "t.conf:1: Workers: ' 4' is not an integer"},
        {"Workers 0\n", "t.conf:1: Workers: '0' is out of range (1..4096)"},
        {"Workers -1\n", "t.conf:1: Workers: '-1' is out of range (1..4096)"},
        {"Workers 4097\n",
         "t.conf:1: Workers: '4097' is out of range (1..4096)"},
        {"Workers 99999999999999999999999\n",
         "t.conf:1: Workers: '99999999999999999999999' is out of range "
         "(1..4096)"},
        {"ServerLimit 0\n",
         "t.conf:1: ServerLimit: '0' is out of range (1..4096)"},
        {"MaxQueue -1\n",
         "t.conf:1: MaxQueue: '-1' is out of range (0..1000000)"},
        {"QueueTimeout 0\n",
         "t.conf:1: QueueTimeout: '0' is out of range (1..86400)"},
        {"RequestTimeout 86401\n",
         "t.conf:1: RequestTimeout: '86401' is out of range (1..86400)"},
        {"MaxRequestsPerWorker -5\n",
         "t.conf:1: MaxRequestsPerWorker: '-5' is out of range "
         "(0..9223372036854775807)"},
        {"GracefulTimeout 3601\n",
         "t.conf:1: GracefulTimeout: '3601' is out of range (0..3600)"},
        {"CGITimeout 0\n",
         "t.conf:1: CGITimeout: '0' is out of range (1..86400)"},
        {"MaxLinks 65537\n",
         "t.conf:1: MaxLinks: '65537' is out of range (1..65536)"},
        {"PingInterval 0\n",
         "t.conf:1: PingInterval: '0' is out of range (1..3600)"},
        {"MaxPayload 1K\n",
         "t.conf:1: MaxPayload: '1K' is out of range (4096..16777216)"},
        {"MaxPayload 16777217\n",
         "t.conf:1: MaxPayload: '16777217' is out of range "
         "(4096..16777216)"},
        {"MaxPayload 12Q\n", "t.conf:1: MaxPayload: '12Q' is not a size "
                             "(bytes, or a number with K or M)"},
        {"MaxPayload 1KB\n", "t.conf:1: MaxPayload: '1KB' is not a size "
                             "(bytes, or a number with K or M)"},
        {"MaxPayload K\n", "t.conf:1: MaxPayload: 'K' is not a size "
                           "(bytes, or a number with K or M)"},
        {"MaxPayload 99999999999999999M\n",
         "t.conf:1: MaxPayload: '99999999999999999M' is out of range "
         "(4096..16777216)"},
        {"InitialWindow 2048M\n",
         "t.conf:1: InitialWindow: '2048M' is out of range "
         "(4096..2147483647)"},
        {"SlotBufferSize 96K\n",
         "t.conf:1: SlotBufferSize: '96K' is not a power of two"},
        {"SlotBufferSize 32K\n", "t.conf:1: SlotBufferSize: '32K' is out of "
                                 "range (65536..67108864)"},
        {"SlotBufferSize 128M\n", "t.conf:1: SlotBufferSize: '128M' is out "
                                  "of range (65536..67108864)"},
        {"Workers\n", "t.conf:1: Workers takes 1 argument, got 0"},
        {"Workers 1 2\n", "t.conf:1: Workers takes 1 argument, got 2"},
        {"Listen\n", "t.conf:1: Listen takes 1 argument, got 0"},
        {"User a b c d e f g h i j\n",
         "t.conf:1: User takes 1 argument, got 10"},
        {"Handler /x\n", "t.conf:1: Handler takes 2 or 3 arguments, got 1"},
        {"Handler /x a b c\n",
         "t.conf:1: Handler takes 2 or 3 arguments, got 4"},
        {"Handler x builtin:hello\n",
         "t.conf:1: Handler: prefix 'x' must start with '/'"},
        {"Handler \"\" builtin:hello\n",
         "t.conf:1: Handler: prefix '' must start with '/'"},
        {"Handler /x \"\"\n", "t.conf:1: Handler spec: empty argument"},
        {"Handler /x builtin:hello\nHandler /x builtin:echo\n",
         "t.conf:2: Handler: prefix '/x' is already mapped on line 1"},
        {"LogLevel loud\n", "t.conf:1: LogLevel: 'loud' is not one of "
                            "error, warn, info, debug"},
        {"Group \"\"\n", "t.conf:1: Group: empty argument"},
        {"Scheduling fifo\n", "t.conf:1: Scheduling: 'fifo' is not one of "
                               "batch, normal"},
        {"Scheduling\n", "t.conf:1: Scheduling takes 1 argument, got 0"},
        {"PollTime -1\n",
         "t.conf:1: PollTime: '-1' is out of range (0..10000)"},
        {"Workers 2\nPollTime 10001\n",
         "t.conf:2: PollTime: '10001' is out of range (0..10000)"},
        {"PollTime abc\n", "t.conf:1: PollTime: 'abc' is not an integer"},
        {"PollTime 200us\n", "t.conf:1: PollTime: '200us' is not an integer"},
        {"PollTime\n", "t.conf:1: PollTime takes 1 argument, got 0"},
        {"\n\nPollTime 1 2\n", "t.conf:3: PollTime takes 1 argument, got 2"},
        {"Listen \"\"\n", "t.conf:1: Listen: empty argument"},
        {"User "
         "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu\n",
         "t.conf:1: User: too long (64 bytes, at most 63)"},
        {"NodeName \"a\tb\"\n",
         "t.conf:1: NodeName: control characters are not allowed"},
        {"NodeName \"unterminated\n", "t.conf:1: unterminated quoted string"},
        {"NodeName \"ends in backslash\\", "t.conf:1: unterminated quoted "
                                           "string"},
        {"\n\nNodeName \"a\\nb\"\n",
         "t.conf:3: unknown escape '\\n' in a quoted string (only \\\" and "
         "\\\\)"},
        {"NodeName \"ab\"c\n",
         "t.conf:1: text after a closing quote (a blank must follow it)"},
        {"NodeName a\"b\"\n", "t.conf:1: '\"' inside an unquoted argument "
                              "(quote the whole argument)"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i].text, cases[i].want);

    /* A bad Listen is refused with sp_addr_parse's reason (its wording is
     * sp_net's business; it names the address). */
    spb_config_t c;
    ck_assert_int_eq(parse(&c, "Workers 2\nListen tcp://127.0.0.1\n"), -1);
    ck_assert_msg(strncmp(errbuf, "t.conf:2: Listen: ", 18) == 0, "%s", errbuf);
    ck_assert_msg(strstr(errbuf, "tcp://127.0.0.1") != NULL, "%s", errbuf);
    ck_assert_int_eq(parse(&c, "Listen ftp://x\n"), -1);
    ck_assert_msg(strncmp(errbuf, "t.conf:1: Listen: ", 18) == 0, "%s", errbuf);
    ck_assert_int_eq(parse(&c, "Listen unix:relative.sock\n"), -1);
    ck_assert_msg(strncmp(errbuf, "t.conf:1: Listen: ", 18) == 0, "%s", errbuf);
}
END_TEST

START_TEST(config_nul_and_long_lines)
{
    static const char nul[] = "Workers 4\nMaxLinks 5\nUser a\0b\nFoo\n";
    char *big = malloc(FILE_MAX_BYTES + 2);
    spb_config_t c;
    size_t n;

    ck_assert_ptr_nonnull(big);
    expect_error_n(nul, sizeof(nul) - 1, "t.conf:3: NUL byte in the file");
    expect_error_n("\0", 1, "t.conf:1: NUL byte in the file");

    /* A logical line of exactly the limit is fine (also with a CR before
     * its newline), one byte more is not. */
    memset(big, 'x', LINE_MAX_BYTES);
    big[0] = '#';
    memcpy(big + LINE_MAX_BYTES, "\r\n", 3);
    parse_ok(&c, big);
    memcpy(big, "Workers 4\n#", 11);
    memset(big + 11, 'x', LINE_MAX_BYTES);
    memcpy(big + 10 + LINE_MAX_BYTES + 1, "\n", 2);
    expect_error(big, "t.conf:2: line too long (more than 16384 bytes)");
    /* The limit is on the joined line: two halves that fit alone. */
    memset(big, 'x', 20000);
    memcpy(big, "Workers 4\n#", 11);
    memcpy(big + 9000, "\\\n", 2);
    memcpy(big + 19000, "\n", 2);
    expect_error(big, "t.conf:2: line too long (more than 16384 bytes)");
    /* A huge line without any newline is refused, not read past. */
    memset(big, 'y', FILE_MAX_BYTES);
    expect_error_n(big, FILE_MAX_BYTES,
                   "t.conf:1: line too long (more than 16384 bytes)");

    /* Files: exactly 1 MiB of short comment lines parses, one more byte
     * does not. */
    for (n = 0; n < FILE_MAX_BYTES; n += 64) {
        memset(big + n, ' ', 64);
        big[n] = '#';
        big[n + 63] = '\n';
    }
    ck_assert_int_eq(parse_n(&c, big, FILE_MAX_BYTES), 0);
    big[FILE_MAX_BYTES] = '\n';
    expect_error_n(big, FILE_MAX_BYTES + 1,
                   "t.conf: file too large (more than 1048576 bytes)");
    free(big);
}
END_TEST

START_TEST(config_too_many)
{
    char text[8192];
    size_t n = 0;

    for (int i = 0; i < 17; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              "Listen tcp://127.0.0.1:%d\n", 9000 + i);
    expect_error(text, "t.conf:17: too many Listen directives (at most 16)");

    /* Sixteen are fine. */
    spb_config_t c;
    text[strlen(text) - strlen("Listen tcp://127.0.0.1:9016\n")] = '\0';
    parse_ok(&c, text);
    ck_assert_int_eq(c.nlisten, 16);
    ck_assert_int_eq(c.listen[15].port, 9015);
    ck_assert_int_eq(c.listen_line[15], 16);

    n = 0;
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              "Handler /h%d builtin:hello\n", i);
    expect_error(text, "t.conf:65: too many Handler directives (at most 64)");
}
END_TEST

/* ---- spb_config_load --------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/spb-config-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void write_file(const char *path, const void *data, size_t len,
                       mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
}

START_TEST(config_load)
{
    char path[128], want[512];
    spb_config_t c;
    char *big;

    make_tmpdir();
    snprintf(path, sizeof(path), "%s/backend.conf", tmpdir);
    write_file(path, "Listen unix:/tmp/x.sock\nWorkers 3\n",
               strlen("Listen unix:/tmp/x.sock\nWorkers 3\n"), 0644);
    c.workers = -1;
    ck_assert_int_eq(spb_config_load(&c, path, errbuf, sizeof(errbuf)), 0);
    ck_assert_str_eq(errbuf, "");
    ck_assert_int_eq(c.workers, 3);
    ck_assert_int_eq(c.nlisten, 1);
    ck_assert_str_eq(c.file, path);

    write_file(path, "Workers 3\nWorkers x\n", strlen("Workers 3\nWorkers x\n"),
               0644);
    c.workers = 42;
    ck_assert_int_eq(spb_config_load(&c, path, errbuf, sizeof(errbuf)), -1);
    snprintf(want, sizeof(want), "%s:2: Workers: 'x' is not an integer", path);
    ck_assert_str_eq(errbuf, want);
    ck_assert_int_eq(c.workers, 42);

    big = malloc(FILE_MAX_BYTES + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, '\n', FILE_MAX_BYTES + 1);
    write_file(path, big, FILE_MAX_BYTES + 1, 0644);
    ck_assert_int_eq(spb_config_load(&c, path, errbuf, sizeof(errbuf)), -1);
    snprintf(want, sizeof(want), "%s: file too large (more than 1048576 bytes)",
             path);
    ck_assert_str_eq(errbuf, want);
    write_file(path, big, FILE_MAX_BYTES, 0644);
    ck_assert_int_eq(spb_config_load(&c, path, errbuf, sizeof(errbuf)), 0);
    free(big);

    unlink(path);
    ck_assert_int_eq(spb_config_load(&c, path, errbuf, sizeof(errbuf)), -1);
    snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
    ck_assert_str_eq(errbuf, want);

    ck_assert_int_eq(spb_config_load(&c, tmpdir, errbuf, sizeof(errbuf)), -1);
    snprintf(want, sizeof(want), "%s: cannot read: %s", tmpdir,
             strerror(EISDIR));
    ck_assert_str_eq(errbuf, want);
    rmdir(tmpdir);
}
END_TEST

/* ---- spb_config_check -------------------------------------------------- */

START_TEST(config_check_listen)
{
    expect_check("Workers 4\n",
                 "t.conf: no Listen directive (at least one is required)");
    expect_check("Listen tcp://127.0.0.1:9\nListen unix:/tmp/spb.sock\n"
                 "Listen tcp://[::1]:9\nListen tcp://127.1.2.3:0\n",
                 NULL);
    expect_check("Listen tcp://0.0.0.0:9\n",
                 "t.conf:1: Listen tcp://0.0.0.0:9 is not on loopback and "
                 "needs SecretFile");
    expect_check("Listen tcp://127.0.0.1:9\n\nListen tcp://192.0.2.1:9\n",
                 "t.conf:3: Listen tcp://192.0.2.1:9 is not on loopback and "
                 "needs SecretFile");
    expect_check("Listen tcp://[::]:9\n", "t.conf:1: Listen tcp://[::]:9 is "
                                          "not on loopback and needs "
                                          "SecretFile");
}
END_TEST

START_TEST(config_check_workers)
{
    expect_check("Listen unix:/tmp/a.sock\nServerLimit 8\nWorkers 9\n",
                 "t.conf:3: Workers 9 is more than ServerLimit 8");
    expect_check("Listen unix:/tmp/a.sock\nServerLimit 2\n",
                 "t.conf:2: ServerLimit 2 is less than Workers (default 4)");
    expect_check("Listen unix:/tmp/a.sock\nServerLimit 9\nWorkers 9\n", NULL);
    expect_check("Listen unix:/tmp/a.sock\nWorkers 500\n", NULL);
}
END_TEST

START_TEST(config_check_secret)
{
    static const char secret[] = "0123456789abcdef0123456789abcdef\n";
    char path[128], text[512];
    spb_config_t c;

    make_tmpdir();
    snprintf(path, sizeof(path), "%s/secret", tmpdir);

    /* Readable by "other": refused, naming the SecretFile line. */
    write_file(path, secret, sizeof(secret) - 1, 0644);
    snprintf(text, sizeof(text), "Listen tcp://0.0.0.0:9\n\nSecretFile %s\n",
             path);
    parse_ok(&c, text);
    ck_assert_int_eq(spb_config_check(&c, errbuf, sizeof(errbuf)), -1);
    ck_assert_msg(strncmp(errbuf, "t.conf:3: ", 10) == 0, "%s", errbuf);
    ck_assert_msg(strstr(errbuf, path) != NULL, "%s", errbuf);

    /* 0600: accepted, and it makes a non-loopback listener acceptable. */
    ck_assert_int_eq(chmod(path, 0600), 0);
    ck_assert_int_eq(spb_config_check(&c, errbuf, sizeof(errbuf)), 0);
    ck_assert_str_eq(errbuf, "");
    ck_assert_int_eq(chmod(path, 0640), 0);
    ck_assert_int_eq(spb_config_check(&c, errbuf, sizeof(errbuf)), 0);

    /* Too short a secret. */
    write_file(path, "short\n", 6, 0600);
    ck_assert_int_eq(spb_config_check(&c, errbuf, sizeof(errbuf)), -1);
    ck_assert_msg(strncmp(errbuf, "t.conf:3: ", 10) == 0, "%s", errbuf);

    /* Missing. */
    unlink(path);
    ck_assert_int_eq(spb_config_check(&c, errbuf, sizeof(errbuf)), -1);
    ck_assert_msg(strncmp(errbuf, "t.conf:3: ", 10) == 0, "%s", errbuf);
    ck_assert_msg(strstr(errbuf, path) != NULL, "%s", errbuf);
    rmdir(tmpdir);
}
END_TEST

START_TEST(config_check_handlers)
{
    expect_check("Listen unix:/tmp/a.sock\nHandler / builtin:hello\n"
                 "Handler /echo builtin:echo\n"
                 "Handler /app plugin:/nonexistent/app.so some-arg\n"
                 "Handler /cgi-bin cgi:/nonexistent/cgi\n",
                 NULL);
    expect_check("Listen unix:/tmp/a.sock\nHandler / builtin:nope\n",
                 "t.conf:2: Handler: unknown builtin 'nope' (known: hello, "
                 "echo, session-demo)");
    expect_check("Listen unix:/tmp/a.sock\nHandler / builtin:\n",
                 "t.conf:2: Handler: unknown builtin '' (known: hello, "
                 "echo, session-demo)");
    expect_check("Listen unix:/tmp/a.sock\n\nHandler /a builtin:hello\n"
                 "Handler /b plugin:rel/app.so\n",
                 "t.conf:4: Handler: plugin path 'rel/app.so' is not "
                 "absolute");
    expect_check("Listen unix:/tmp/a.sock\nHandler /c cgi:cgi-bin\n",
                 "t.conf:2: Handler: cgi directory 'cgi-bin' is not "
                 "absolute");
    expect_check("Listen unix:/tmp/a.sock\nHandler /f fcgi:/x\n",
                 "t.conf:2: Handler: 'fcgi:/x' is not builtin:NAME, "
                 "plugin:/path.so or cgi:/dir");
    expect_check("Listen unix:/tmp/a.sock\nHandler /f BUILTIN:hello\n",
                 "t.conf:2: Handler: 'BUILTIN:hello' is not builtin:NAME, "
                 "plugin:/path.so or cgi:/dir");
}
END_TEST

/* ---- the shipped sample ------------------------------------------------ */

/* conf/slotproxy-backend.conf parses and checks as shipped, and each of its
 * commented-out directives ("#Name value") parses when uncommented.  Run
 * from the top of the tree, as make does. */
START_TEST(config_sample_file)
{
    const char *path = "conf/slotproxy-backend.conf";
    spb_config_t c;
    char line[1024];
    int directives = 0;
    FILE *f;

    ck_assert_int_eq(spb_config_load(&c, path, errbuf, sizeof(errbuf)), 0);
    ck_assert_int_eq(spb_config_check(&c, errbuf, sizeof(errbuf)), 0);
    ck_assert_int_ge(c.nlisten, 1);

    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] != '#' || line[1] < 'A' || line[1] > 'Z')
            continue;
        directives++;
        ck_assert_msg(parse(&c, line + 1) == 0, "%s: %s", line, errbuf);
    }
    fclose(f);
    ck_assert_int_ge(directives, 20);
}
END_TEST

/* ---- garbage ----------------------------------------------------------- */

/* An error must be one line, name the file, and hold no control byte. */
static void assert_sane_error(int rc)
{
    ck_assert_msg(rc == 0 || rc == -1, "rc %d", rc);
    if (rc == 0)
        return;
    ck_assert_msg(strncmp(errbuf, "g.conf:", 7) == 0, "%s", errbuf);
    for (const char *s = errbuf; *s != '\0'; s++)
        ck_assert_msg((unsigned char)*s >= 0x20 && *s != 0x7f,
                      "control byte in \"%s\"", errbuf);
}

START_TEST(config_garbage)
{
    /* Words for the "almost a config" generator.  No tcp:// on purpose:
     * a mutated host name would go to the resolver. */
    static const char *const words[] = {"Workers",
                                        "ServerLimit",
                                        "MaxPayload",
                                        "SlotBufferSize",
                                        "Handler",
                                        "Listen",
                                        "unix:/tmp/g.sock",
                                        "NodeName",
                                        "LogLevel",
                                        "User",
                                        "SecretFile",
                                        "InitialWindow",
                                        "MaxRequestsPerWorker",
                                        "\"",
                                        "\\",
                                        "\\\"",
                                        "\\\\",
                                        "#",
                                        "\n",
                                        "\r\n",
                                        "\\\n",
                                        " ",
                                        "\t",
                                        "4",
                                        "64K",
                                        "16M",
                                        "-1",
                                        "99999999999999999999",
                                        "/",
                                        "builtin:hello",
                                        "debug",
                                        "K",
                                        "0",
                                        "\"\"",
                                        "x",
                                        "\x01",
                                        "\xff"};
    static const char base[] =
        "Listen unix:/tmp/g.sock\nWorkers 8\nServerLimit 16\n"
        "Handler /a builtin:hello \"x y\"\nMaxPayload 64K\n"
        "SlotBufferSize 256K\nNodeName \"n \\\"1\\\"\"\n# c\n"
        "LogLevel info \\\n  \n";
    char buf[8192];
    spb_config_t c;
    int ok = 0;

    sp_test_rng_seed(0x5350425f434f4e46ull); /* "SPB_CONF" */
    for (int iter = 0; iter < 6000; iter++) {
        size_t len = 0;
        int mode = iter % 3;

        if (mode == 0) { /* random bytes */
            len = sp_test_rng() % sizeof(buf);
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)sp_test_rng();
        } else if (mode == 1) { /* random words */
            int nw = (int)(sp_test_rng() % 200);
            for (int i = 0; i < nw; i++) {
                const char *w =
                    words[sp_test_rng() % (sizeof(words) / sizeof(words[0]))];
                size_t wl = strlen(w);
                if (len + wl > sizeof(buf))
                    break;
                memcpy(buf + len, w, wl);
                len += wl;
            }
        } else { /* a good file with a few bytes changed */
            len = sizeof(base) - 1;
            memcpy(buf, base, len);
            int nm = 1 + (int)(sp_test_rng() % 4);
            for (int i = 0; i < nm; i++)
                buf[sp_test_rng() % len] = (char)sp_test_rng();
            if (sp_test_rng() % 4 == 0)
                len = sp_test_rng() % len;
        }
        memset(errbuf, 0, sizeof(errbuf));
        int rc =
            spb_config_parse(&c, "g.conf", buf, len, errbuf, sizeof(errbuf));
        assert_sane_error(rc);
        if (rc == 0) {
            ok++;
            ck_assert_int_le(c.nlisten, SPB_MAX_LISTEN);
            ck_assert_int_le(c.nhandlers, SPB_MAX_HANDLERS);
            c.secret_file[0] = '\0'; /* no random paths opened */
            memset(errbuf, 0, sizeof(errbuf));
            assert_sane_error(spb_config_check(&c, errbuf, sizeof(errbuf)));
        }
    }
    /* The generators reach the accepting paths too. */
    ck_assert_int_gt(ok, 100);

    /* A tiny error buffer is filled, never overrun. */
    char small[8];
    memset(small, 'z', sizeof(small));
    ck_assert_int_eq(spb_config_parse(&c, "g.conf", "Foo\n", 4, small, 5), -1);
    ck_assert_str_eq(small, "g.co");
    ck_assert_int_eq(small[5], 'z');
    ck_assert_int_eq(spb_config_parse(&c, "g.conf", "Foo\n", 4, NULL, 0), -1);
}
END_TEST

Suite *suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, config_defaults);
    tcase_add_test(tc, config_every_directive);
    tcase_add_test(tc, config_numbers);
    tcase_add_test(tc, config_server_limit_default);
    tcase_add_test(tc, config_case_and_last_wins);
    tcase_add_test(tc, config_quoting);
    tcase_add_test(tc, config_continuation);
    tcase_add_test(tc, config_errors);
    tcase_add_test(tc, config_nul_and_long_lines);
    tcase_add_test(tc, config_too_many);
    tcase_add_test(tc, config_load);
    tcase_add_test(tc, config_check_listen);
    tcase_add_test(tc, config_check_workers);
    tcase_add_test(tc, config_check_secret);
    tcase_add_test(tc, config_check_handlers);
    tcase_add_test(tc, config_sample_file);
    tcase_add_test(tc, config_garbage);
    suite_add_tcase(s, tc);
    return s;
}
