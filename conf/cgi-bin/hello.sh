#!/bin/sh
# hello.sh - the smallest useful CGI script: a greeting, then every CGI
# meta-variable the backend passed (docs/applications.md lists them).
#
#   Handler /cgi-bin/ cgi:/path/to/conf/cgi-bin
#   curl 'http://127.0.0.1:8080/cgi-bin/hello.sh/extra?x=1'
#
# The header block ends at the first empty line; everything after it is
# the body, sent to the client as it is written.
printf 'Content-Type: text/plain; charset=utf-8\n'
printf 'Cache-Control: no-store\n'
printf '\n'
printf 'Hello from %s, pid %s\n\n' "$SCRIPT_NAME" "$$"
env | LC_ALL=C sort
