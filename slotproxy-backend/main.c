/*
 * main.c - slotproxy-backend: command line, configuration, daemon start.
 *
 *   slotproxy-backend -f FILE [-X] [-t] [-v]
 *     -f FILE  configuration (default /etc/slotproxy/backend.conf)
 *     -t       check the configuration (syntax, addresses, secret file,
 *              handlers load) and exit: 0 if good, 1 with the reason
 *     -X       stay in the foreground, log to stderr unless ErrorLog says
 *              otherwise
 *     -v       print the version and exit
 *
 * Without -X the daemon detaches (fork, setsid) and the starting process
 * exits only once the daemon is ready (listeners open, workers started)
 * or has failed, with a matching exit status.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "log.h"

static void usage(void)
{
    fprintf(stderr, "usage: slotproxy-backend [-f FILE] [-t] [-X] [-v]\n");
}

static int write_pid_file(const char *path)
{
    if (path[0] == '\0')
        return 0;
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 ||
        rename(tmp, path) < 0) {
        SPB_ERR("SPB0010", "PidFile %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int check_handlers(const spb_config_t *cfg, char *err, size_t len)
{
    for (int i = 0; i < cfg->nhandlers; i++) {
        sp_handler_t h;
        char e[512] = "";
        const spb_handler_conf_t *hc = &cfg->handlers[i];
        if (sp_handler_load(&h, hc->prefix, hc->spec, hc->arg, e, sizeof(e)) <
            0) {
            snprintf(err, len, "%.300s:%d: Handler %.100s %.200s: %.300s",
                     cfg->file, hc->line,
                     hc->prefix, hc->spec, e);
            return -1;
        }
        sp_handler_unload(&h);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *file = "/etc/slotproxy/backend.conf";
    int test = 0, foreground = 0, opt;
    while ((opt = getopt(argc, argv, "f:tXvh")) != -1) {
        switch (opt) {
        case 'f': file = optarg; break;
        case 't': test = 1; break;
        case 'X': foreground = 1; break;
        case 'v': printf("slotproxy-backend %s\n", SPB_VERSION); return 0;
        default: usage(); return 2;
        }
    }
    if (optind != argc) {
        usage();
        return 2;
    }
    spb_config_t *cfg = malloc(sizeof(*cfg));
    char err[1024];
    if (cfg == NULL)
        return 1;
    if (spb_config_load(cfg, file, err, sizeof(err)) < 0 ||
        spb_config_check(cfg, err, sizeof(err)) < 0 ||
        check_handlers(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "slotproxy-backend: %s\n", err);
        free(cfg);
        return 1;
    }
    if (test) {
        printf("Syntax OK\n");
        free(cfg);
        return 0;
    }
    int ready[2] = {-1, -1};
    if (!foreground) {
        if (pipe(ready) < 0)
            return 1;
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid > 0) {
            close(ready[1]);
            char c = 1;
            ssize_t n = read(ready[0], &c, 1);
            return n == 1 ? c : 1;
        }
        close(ready[0]);
        fcntl(ready[1], F_SETFD, FD_CLOEXEC);
        setsid();
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            if (strcmp(cfg->error_log, "stderr") != 0 && cfg->error_log[0])
                dup2(nul, 2);
            if (nul > 2)
                close(nul);
        }
    }
    if (spb_log_open(cfg->error_log, cfg->log_level) < 0) {
        fprintf(stderr, "slotproxy-backend: ErrorLog %s: %s\n", cfg->error_log,
                strerror(errno));
        if (ready[1] >= 0) {
            char c = 1;
            ssize_t w = write(ready[1], &c, 1);
            (void)w;
        }
        return 1;
    }
    if (write_pid_file(cfg->pid_file) < 0)
        return 1;
    char pidfile[1024];
    snprintf(pidfile, sizeof(pidfile), "%s", cfg->pid_file);
    /* The dispatcher writes the status byte to ready[1] once it listens. */
    int rc = spb_dispatcher_run(file, cfg, ready[1]);
    if (pidfile[0])
        unlink(pidfile);
    return rc;
}
