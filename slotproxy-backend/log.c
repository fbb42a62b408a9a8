/*
 * log.c - the error log (see log.h).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static int log_lvl = SPB_LOG_WARN;

static int log_open_fd(const char *where)
{
    if (where == NULL || where[0] == '\0' || strcmp(where, "stderr") == 0)
        return 2;
    return open(where, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int spb_log_open(const char *where, int level)
{
    int fd = log_open_fd(where);
    if (fd < 0)
        return -1;
    log_fd = fd;
    log_lvl = level;
    return 0;
}

int spb_log_reopen(const char *where, int level)
{
    int fd = log_open_fd(where);
    if (fd < 0)
        return -1;
    if (log_fd > 2 && log_fd != fd)
        close(log_fd);
    log_fd = fd;
    log_lvl = level;
    return 0;
}

int spb_log_fd(void)
{
    return log_fd;
}

int spb_log_level(void)
{
    return log_lvl;
}

static const char *level_name(int level)
{
    switch (level) {
    case SPB_LOG_ERR: return "error";
    case SPB_LOG_WARN: return "warn";
    case SPB_LOG_INFO: return "info";
    default: return "debug";
    }
}

void spb_log(int level, const char *tag, const char *fmt, ...)
{
    if (level > log_lvl)
        return;
    int saved = errno;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "[%04d-%02d-%02d %02d:%02d:%02d.%06ld] [%s] [pid %d] %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (long)tv.tv_usec, level_name(level),
                     (int)getpid(), tag);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    /* No control characters from messages (peer-supplied strings). */
    for (size_t i = (size_t)n; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[len++] = '\n';
    ssize_t w = write(log_fd, line, len);
    (void)w;
    errno = saved;
}
