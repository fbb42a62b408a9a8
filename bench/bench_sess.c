/*
 * bench_sess.c - session store throughput against Redis, in one run.
 *
 *   build/bench/bench_sess [-t seconds_per_row] [-n sessions] [-v bytes]
 *                          [-d pipeline_depth] [-p passes]
 *
 * Defaults: 10,000 sessions of 1,024 bytes, 1 s per row, 1, 2 and 8
 * processes, 3 passes.  Each row runs that many processes at once, each
 * doing operations on sessions picked at random, and reports the total
 * ops/s:
 *
 *   slotproxy get   sp_sess_get into a private buffer (CRC-checked copy)
 *   slotproxy put   sp_sess_put of a new 1 KiB value (copy-on-write: new
 *                   block, checksum, publication, old block freed)
 *   redis GET/SET   the same operation on the same number of keys holding
 *                   values of the same size, one request at a time per
 *                   process over TCP loopback, each process with its own
 *                   connection: the way one httpd child would use it
 *   redis pipelined the same with -d requests in flight per connection
 *                   (default 16): Redis' best case, shown for reference
 *
 * Redis: Debian's redis-server, started by this program on 127.0.0.1 with
 * a free port, its working directory in a temp dir, no persistence (--save
 * "" --appendonly no), and stopped at the end.  The RESP client below is a
 * few lines over plain sockets (GET, SET; bulk, simple, error replies).
 * Every reply is checked (length of the value), so a broken path cannot
 * look fast.  Without redis-server in PATH the Redis rows are skipped.
 *
 * Everything shares the machine's CPUs: the benchmark processes, and for
 * the Redis rows the single-threaded server as well.  The machine may be
 * shared with other work too, so the three variants of one row run back
 * to back (same conditions), every row runs in each of -p passes, and the
 * best figure of each is printed (the spread is printed beside it).  A
 * benchmark prints figures and never asserts (STYLE.md); the target is
 * slotproxy ops/s >= 10x Redis' (one request at a time), printed as met / not
 * met.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_atomic.h"
#include "sp_error.h"
#include "sp_proc.h"
#include "sp_sess.h"

static double opt_secs = 1.0;
static int opt_passes = 3;
static int opt_nsess = 10000;
static int opt_vsize = 1024;
static int opt_depth = 16;
static const int procs[] = {1, 2, 8};
#define NPROCS (int)(sizeof(procs) / sizeof(procs[0]))
#define MAXP 8

static char tmpdir[64];
static pid_t redis_pid = -1;

static void cleanup(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
    if (tmpdir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) {
            /* nothing more to do */
        }
        tmpdir[0] = '\0';
    }
}

static void die(const char *msg)
{
    fprintf(stderr, "bench_sess: %s (%s)\n", msg, strerror(errno));
    cleanup();
    exit(1);
}

static void *shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ---- rows: nproc processes started together, each until the deadline ---- */

struct shared_area {
    int go;
    uint64_t ops[MAXP];
    int failed;
    char ids[]; /* opt_nsess * 33 */
};

static struct shared_area *area;

typedef long (*worker_fn)(int self, int64_t until, uint64_t seed);

static double run_row(int nproc, worker_fn fn)
{
    sp_store_relaxed(&area->go, 0);
    area->failed = 0;
    pid_t pids[MAXP];
    for (int p = 0; p < nproc; p++) {
        pids[p] = fork();
        if (pids[p] < 0)
            die("fork");
        if (pids[p] == 0) {
            while (!sp_load_acquire(&area->go))
                usleep(100);
            int64_t until = sp_now_ns() + (int64_t)(opt_secs * 1e9);
            long n = fn(p, until, 0x9E3779B97F4A7C15ull * (uint64_t)(p + 7));
            if (n < 0)
                sp_store_relaxed(&area->failed, 1);
            area->ops[p] = n < 0 ? 0 : (uint64_t)n;
            _exit(0);
        }
    }
    usleep(20000); /* let them all reach the barrier */
    sp_store_release(&area->go, 1);
    uint64_t total = 0;
    for (int p = 0; p < nproc; p++) {
        waitpid(pids[p], NULL, 0);
        total += area->ops[p];
    }
    if (area->failed)
        return -1;
    return (double)total / opt_secs;
}

static const char *id_of(int k)
{
    return area->ids + (size_t)k * 33;
}

/* ---- slotproxy ---- */

static sp_sess_t store;

static long sp_get_worker(int self, int64_t until, uint64_t seed)
{
    static unsigned char buf[1 << 16];
    long n = 0;
    (void)self;
    while (sp_now_ns() < until) {
        for (int i = 0; i < 256; i++) {
            size_t len;
            int k = (int)(rnd(&seed) % (uint64_t)opt_nsess);
            int rc = sp_sess_get(&store, id_of(k), buf, sizeof(buf), &len,
                                 sp_deadline_ms(1000));
            if (rc != 0 || len != (size_t)opt_vsize)
                return -1;
            n++;
        }
    }
    return n;
}

static long sp_put_worker(int self, int64_t until, uint64_t seed)
{
    static unsigned char val[1 << 16];
    long n = 0;
    memset(val, 'a' + self, sizeof(val));
    while (sp_now_ns() < until) {
        for (int i = 0; i < 256; i++) {
            int k = (int)(rnd(&seed) % (uint64_t)opt_nsess);
            memcpy(val, &n, sizeof(n));
            if (sp_sess_put(&store, id_of(k), val, (size_t)opt_vsize,
                            SP_SESS_KEEP_EXPIRY, sp_deadline_ms(1000)) != 0)
                return -1;
            n++;
        }
    }
    return n;
}

/* ---- a minimal RESP client ---- */

typedef struct resp {
    int fd;
    char in[1 << 17];
    size_t have, pos;
    char *out;
    size_t outlen, outcap;
} resp_t;

static int resp_connect(resp_t *c, int port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->have = c->pos = 0;
    c->outlen = 0;
    return 0;
}

static void resp_close(resp_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void out_add(resp_t *c, const void *p, size_t n)
{
    if (c->outlen + n > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 4096;
        while (cap < c->outlen + n)
            cap *= 2;
        c->out = realloc(c->out, cap);
        if (c->out == NULL)
            die("realloc");
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void out_bulk(resp_t *c, const void *p, size_t n)
{
    char hdr[32];
    int h = snprintf(hdr, sizeof(hdr), "$%zu\r\n", n);
    out_add(c, hdr, (size_t)h);
    out_add(c, p, n);
    out_add(c, "\r\n", 2);
}

static void cmd_get(resp_t *c, const char *key)
{
    out_add(c, "*2\r\n", 4);
    out_bulk(c, "GET", 3);
    out_bulk(c, key, strlen(key));
}

static void cmd_set(resp_t *c, const char *key, const void *v, size_t n)
{
    out_add(c, "*3\r\n", 4);
    out_bulk(c, "SET", 3);
    out_bulk(c, key, strlen(key));
    out_bulk(c, v, n);
}

static int resp_flush(resp_t *c)
{
    size_t off = 0;
    while (off < c->outlen) {
        ssize_t w = write(c->fd, c->out + off, c->outlen - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    c->outlen = 0;
    return 0;
}

/* Make at least n unread bytes available. */
static int resp_fill(resp_t *c, size_t n)
{
    if (c->have - c->pos >= n)
        return 0;
    if (c->pos > 0) {
        memmove(c->in, c->in + c->pos, c->have - c->pos);
        c->have -= c->pos;
        c->pos = 0;
    }
    while (c->have < n) {
        if (n > sizeof(c->in))
            return -1;
        ssize_t r = read(c->fd, c->in + c->have, sizeof(c->in) - c->have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c->have += (size_t)r;
    }
    return 0;
}

/* Read one reply: returns the bulk length (>= 0), -2 for a simple string
 * (+OK), -1 on error or nil. */
static long resp_reply(resp_t *c)
{
    for (;;) {
        char *nl = memchr(c->in + c->pos, '\n', c->have - c->pos);
        if (nl != NULL)
            break;
        if (resp_fill(c, c->have - c->pos + 1) < 0)
            return -1;
    }
    char *line = c->in + c->pos;
    char *nl = memchr(line, '\n', c->have - c->pos);
    size_t ll = (size_t)(nl - line) + 1;
    char type = line[0];
    long v = strtol(line + 1, NULL, 10);
    c->pos += ll;
    if (type == '+')
        return -2;
    if (type != '$' || v < 0)
        return -1;
    if (resp_fill(c, (size_t)v + 2) < 0)
        return -1;
    c->pos += (size_t)v + 2;
    return v;
}

static int redis_port;

static void key_of(int k, char *key)
{
    snprintf(key, 40, "s:%s", id_of(k));
}

static long redis_worker(int self, int64_t until, uint64_t seed, int set,
                         int depth)
{
    static resp_t c;
    static unsigned char val[1 << 16];
    memset(val, 'a' + self, sizeof(val));
    if (resp_connect(&c, redis_port) < 0)
        return -1;
    long n = 0;
    char key[40];
    while (sp_now_ns() < until) {
        for (int i = 0; i < 64; i++) {
            for (int d = 0; d < depth; d++) {
                key_of((int)(rnd(&seed) % (uint64_t)opt_nsess), key);
                if (set)
                    cmd_set(&c, key, val, (size_t)opt_vsize);
                else
                    cmd_get(&c, key);
            }
            if (resp_flush(&c) < 0)
                return -1;
            for (int d = 0; d < depth; d++) {
                long r = resp_reply(&c);
                if (set ? r != -2 : r != opt_vsize)
                    return -1;
            }
            n += depth;
        }
    }
    resp_close(&c);
    return n;
}

static long redis_get1(int s, int64_t u, uint64_t r)
{
    return redis_worker(s, u, r, 0, 1);
}
static long redis_set1(int s, int64_t u, uint64_t r)
{
    return redis_worker(s, u, r, 1, 1);
}
static long redis_getp(int s, int64_t u, uint64_t r)
{
    return redis_worker(s, u, r, 0, opt_depth);
}
static long redis_setp(int s, int64_t u, uint64_t r)
{
    return redis_worker(s, u, r, 1, opt_depth);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
        die("finding a free port");
    close(fd);
    return ntohs(sa.sin_port);
}

/* Start redis-server; 0, or -1 if it is not installed. */
static int redis_start(void)
{
    const char *bin = "redis-server";
    redis_port = free_port();
    char port[16], logf[128];
    snprintf(port, sizeof(port), "%d", redis_port);
    snprintf(logf, sizeof(logf), "%s/redis.log", tmpdir);
    redis_pid = fork();
    if (redis_pid < 0)
        die("fork");
    if (redis_pid == 0) {
        int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp(bin, bin, "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", tmpdir, "--daemonize", "no",
               "--protected-mode", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    resp_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        die("calloc");
    for (int i = 0; i < 500; i++) {
        int st;
        if (waitpid(redis_pid, &st, WNOHANG) == redis_pid) {
            redis_pid = -1;
            free(c);
            return -1;
        }
        if (resp_connect(c, redis_port) == 0) {
            /* Load the keys, pipelined. */
            static unsigned char val[1 << 16];
            memset(val, 'r', sizeof(val));
            char key[40];
            for (int k = 0; k < opt_nsess; k++) {
                key_of(k, key);
                cmd_set(c, key, val, (size_t)opt_vsize);
                if ((k + 1) % 256 == 0 || k + 1 == opt_nsess) {
                    int batch = (k % 256) + 1;
                    if (resp_flush(c) < 0)
                        die("loading redis");
                    for (int b = 0; b < batch; b++)
                        if (resp_reply(c) != -2)
                            die("loading redis");
                }
            }
            resp_close(c);
            free(c->out);
            free(c);
            return 0;
        }
        usleep(10000);
    }
    free(c);
    errno = ETIMEDOUT;
    die("redis-server did not start");
    return -1;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "t:n:v:d:p:")) != -1) {
        switch (opt) {
        case 't':
            opt_secs = atof(optarg);
            break;
        case 'p':
            opt_passes = atoi(optarg);
            break;
        case 'n':
            opt_nsess = atoi(optarg);
            break;
        case 'v':
            opt_vsize = atoi(optarg);
            break;
        case 'd':
            opt_depth = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: bench_sess [-t secs] [-n sessions] "
                            "[-v bytes] [-d depth] [-p passes]\n");
            return 2;
        }
    }
    if (opt_secs <= 0 || opt_nsess < 1 || opt_nsess > 1000000 ||
        opt_vsize < 1 || opt_vsize > 60000 || opt_depth < 1 ||
        opt_depth > 256 || opt_passes < 1 || opt_passes > 20) {
        fprintf(stderr, "bench_sess: bad options\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/bench_sess_XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        die("mkdtemp");
    area = shared(sizeof(*area) + (size_t)opt_nsess * 33);

    /* The store: sized so the index is a quarter full. */
    char path[128];
    snprintf(path, sizeof(path), "%s/sessions", tmpdir);
    sp_sess_conf_t conf;
    memset(&conf, 0, sizeof(conf));
    conf.max_sessions = (uint32_t)opt_nsess * 2;
    conf.data_bytes =
        (uint64_t)opt_nsess * 2 *
        (uint64_t)(opt_vsize + 48 > 4096 ? 2 * (opt_vsize + 48) : 4096);
    conf.max_value = (uint32_t)opt_vsize;
    conf.create = 1;
    if (sp_sess_open(&store, path, &conf, NULL, NULL) != 0)
        die("sp_sess_open");
    unsigned char *val = calloc(1, (size_t)opt_vsize);
    if (val == NULL)
        die("calloc");
    memset(val, 's', (size_t)opt_vsize);
    for (int k = 0; k < opt_nsess; k++)
        if (sp_sess_create(&store, val, (size_t)opt_vsize, 0,
                           area->ids + (size_t)k * 33) != 0)
            die("sp_sess_create");
    free(val);

    double load[3] = {0, 0, 0};
    getloadavg(load, 3);
    printf("session store vs Redis: %d sessions of %d bytes, %.1f s per "
           "row, best of %d passes, %ld CPUs, load average %.1f\n\n",
           opt_nsess, opt_vsize, opt_secs, opt_passes,
           sysconf(_SC_NPROCESSORS_ONLN), load[0]);
    int have_redis = redis_start() == 0;
    /* [op][procs][variant: ours, redis, redis piped][pass] */
    static double fig[2][NPROCS][3][20];
    worker_fn fns[2][3] = {{sp_get_worker, redis_get1, redis_getp},
                           {sp_put_worker, redis_set1, redis_setp}};
    for (int pass = 0; pass < opt_passes; pass++)
        for (int op = 0; op < 2; op++)
            for (int i = 0; i < NPROCS; i++)
                for (int v = 0; v < (have_redis ? 3 : 1); v++)
                    fig[op][i][v][pass] = run_row(procs[i], fns[op][v]);
    cleanup();
    double best[2][NPROCS][3], worst[2][NPROCS][3];
    for (int op = 0; op < 2; op++)
        for (int i = 0; i < NPROCS; i++)
            for (int v = 0; v < 3; v++) {
                best[op][i][v] = worst[op][i][v] = fig[op][i][v][0];
                for (int pass = 1; pass < opt_passes; pass++) {
                    double x = fig[op][i][v][pass];
                    if (x < 0 || best[op][i][v] < 0)
                        best[op][i][v] = -1;
                    else if (x > best[op][i][v])
                        best[op][i][v] = x;
                    if (x >= 0 && x < worst[op][i][v])
                        worst[op][i][v] = x;
                }
            }

    printf("%-4s %5s %14s %14s %8s %18s %8s   %s\n", "op", "procs",
           "slotproxy/s", "redis/s", "ratio", "redis piped/s", "ratio",
           "worst pass: slotproxy / redis");
    int met = 1;
    for (int op = 0; op < 2; op++) {
        for (int i = 0; i < NPROCS; i++) {
            double ours = best[op][i][0];
            double r1 = best[op][i][1];
            double rp = best[op][i][2];
            if (ours < 0 || r1 < 0 || rp < 0) {
                printf("%-4s %5d   (a worker failed: wrong value or error)\n",
                       op == 0 ? "get" : "put", procs[i]);
                met = 0;
                continue;
            }
            if (!have_redis) {
                printf("%-4s %5d %14.0f %14s\n", op == 0 ? "get" : "put",
                       procs[i], ours, "-");
                continue;
            }
            double ratio = ours / r1;
            if (ratio < 10)
                met = 0;
            printf(
                "%-4s %5d %14.0f %14.0f %7.1fx %18.0f %7.1fx   %.0f / %.0f\n",
                op == 0 ? "get" : "put", procs[i], ours, r1, ratio, rp,
                ours / rp, worst[op][i][0], worst[op][i][1]);
        }
    }
    if (have_redis)
        printf("\nredis piped: %d requests in flight per connection.\n"
               "target: slotproxy ops/s >= 10x Redis (one request at a "
               "time) in every row: %s\n",
               opt_depth, met ? "met" : "not met");
    else
        printf("\nredis-server not found in PATH: Redis rows skipped "
               "(scripts/deps.sh bench installs it)\n");
    sp_sess_stats_t ss;
    sp_sess_stats(&store, &ss);
    printf("store after the run: %llu sessions, %llu gets, %llu puts, %llu "
           "busy waits, pool check: %d problem(s)\n",
           (unsigned long long)ss.live, (unsigned long long)ss.gets,
           (unsigned long long)ss.puts, (unsigned long long)ss.busy_waits,
           sp_pool_check(&store.pool, 0));
    sp_sess_close(&store);
    return 0;
}
