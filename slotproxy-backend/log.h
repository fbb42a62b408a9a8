/*
 * log.h - slotproxy-backend's error log.
 *
 * One line per message:
 *   [2026-11-21 05:35:19.123456] [error] [pid 1234] SPB0012: text
 * Every message has its own tag (SPBnnnn), never reused, so tests can
 * whitelist expected lines by tag.  The log is a file (O_APPEND, shared by
 * the dispatcher and its workers: each line is one write()) or stderr.
 */
#ifndef SPB_LOG_H
#define SPB_LOG_H

#include "config.h"

/* Open the log named by the config ("stderr" or a path).  0 or -1 (errno). */
int spb_log_open(const char *where, int level);
/* Reopen after a reload (same contract); keeps the old one on failure. */
int spb_log_reopen(const char *where, int level);
int spb_log_fd(void);
int spb_log_level(void);

void spb_log(int level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SPB_ERR(tag, ...) spb_log(SPB_LOG_ERR, tag, __VA_ARGS__)
#define SPB_WARN(tag, ...) spb_log(SPB_LOG_WARN, tag, __VA_ARGS__)
#define SPB_INFO(tag, ...) spb_log(SPB_LOG_INFO, tag, __VA_ARGS__)
#define SPB_DEBUG(tag, ...) spb_log(SPB_LOG_DEBUG, tag, __VA_ARGS__)

#endif
