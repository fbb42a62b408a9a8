#!/bin/sh
# echo.sh - sends the request body back unchanged, streaming: bytes go out
# as they come in, so it works for bodies of any size and for chunked
# uploads (CONTENT_LENGTH is then unset; read stdin to its end instead).
#
#   curl --data-binary @file http://127.0.0.1:8080/cgi-bin/echo.sh
printf 'Content-Type: %s\n' "${CONTENT_TYPE:-application/octet-stream}"
if [ -n "$CONTENT_LENGTH" ]; then
    # Known length: let the client see it up front.
    printf 'Content-Length: %s\n' "$CONTENT_LENGTH"
fi
printf 'X-Request-Method: %s\n\n' "$REQUEST_METHOD"
exec cat
