#!/bin/bash
# bench/httpd_bench.sh BUILD_DIR - mod_slotproxy end to end, side by side
# with mod_proxy_http and with an in-process handler, in one run.
#
# Run by `make bench` (after the C benchmarks); alone, after
# `make all build/bench/apps/mod_benchhello.so`:
#   bench/httpd_bench.sh build
#   BENCH_MPMS=event BENCH_CONNS="1 64" bench/httpd_bench.sh build
# Knobs (environment): BENCH_SECONDS (5, per run), BENCH_WARMUP (1),
# BENCH_PASSES (2), BENCH_CONNS ("1 16 64 256"), BENCH_MPMS ("prefork
# event"), BENCH_LINKS (2), BENCH_WORKERS (4, backend workers),
# BENCH_NGINX_WORKERS (2), BENCH_BIG (104857600: after the rows of an MPM,
# one response of that many bytes through slotproxy (builtin:echo size=)
# and mod_proxy_http (an nginx static file), best of 3 with curl; 0 skips
# it).  The defaults take about 8 minutes.
#
# Setups, each behind its own httpd (the same config from
# scripts/httpd-conf.sh, the same MPM sizing; only the /hello mapping
# differs), every server on its own 127.0.0.1 port:
#   slotproxy   SlotProxyPass /hello -> slotproxy-backend builtin:hello
#               over tcp://127.0.0.1 (links=BENCH_LINKS, Workers
#               BENCH_WORKERS)
#   sp-shm      the same through the same backend over a shm: link
#               (shared-memory rings, DESIGN.md 3.6); its "be-cn" counts
#               the link's rendezvous sockets
#   proxy_http  ProxyPass /hello -> nginx `return 200 "Hello, world\n"`,
#               connection reuse on (enablereuse), nginx keepalive_requests
#               1000000: every backend connection stays open
#   in-process  BenchHelloPass /hello: bench/apps/mod_benchhello.so answers
#               in the httpd worker (the ceiling: no backend at all)
# All four map the URL without touching the filesystem and answer the
# same 13-byte body "Hello, world\n" as text/plain; the script checks the
# body byte for byte before and after measuring.
#
# For each MPM all servers are started; then for each connection count
# (ascending, so pooled backend connections only grow) the three setups
# run in turn, BENCH_PASSES times over, so that a drift of the machine
# weighs on each alike.  A run is a warm-up of BENCH_WARMUP s, then wrk
# --latency for BENCH_SECONDS with keep-alive (2 threads; 1 for one
# connection).  A row shows the pass with the most req/s (the least
# disturbed: other work on the machine only ever slows a run down), the
# req/s of every pass beside it, non-2xx responses and socket errors
# summed over all passes, and the largest backend connection count seen
# in any pass.
#
# During a run the script samples once a second the established
# connections from httpd to the backend's port (ss, client ends only:
# dport = backend port).  Over the middle of the run (1 s after the start
# to 1 s before the end) it takes the CPU time of each group from the
# tasks' schedstat: CPU microseconds per request for the httpd workers,
# the proxy child, the backend (or nginx) and wrk.  "rest" is the
# machine's remaining CPU use in that window per request (other work on
# the machine): a large "rest" marks a disturbed run.  "busy" is the
# machine's CPU use out of 100% x CPUs.  In the last second of the run it
# reads RSS and PSS of every process of the setup (httpd parent, children
# and proxy child, plus the backend's dispatcher and workers or nginx's
# master and workers); RSS counts shared pages once per process, PSS
# shares them out.
#
# httpd sizing: prefork ServerLimit/MaxRequestWorkers/StartServers 256 (one
# process per keep-alive connection: 256 clients need 256 children, all
# started up front so no row measures prefork's spawn ramp); event
# StartServers 8 x ThreadsPerChild 64 = MaxRequestWorkers 512, all started
# up front: with only 256 threads, event closes keep-alive connections of
# a child holding more connections than it has threads (connections do
# not spread evenly), ~500 socket read errors per run at 256 clients.
#
# Everything lives in BUILD_DIR/bench-run (configs, logs, wrk outputs) and
# is stopped on exit.  Nothing here asserts on time (STYLE.md): the
# targets are printed as met / NOT met from the figures just measured; the
# exit status is non-zero only when a server cannot start or answers
# wrongly.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd)
secs=${BENCH_SECONDS:-5}
warm=${BENCH_WARMUP:-1}
passes=${BENCH_PASSES:-2}
conns=${BENCH_CONNS:-"1 16 64 256"}
mpms=${BENCH_MPMS:-"prefork event"}
links=${BENCH_LINKS:-2}
workers=${BENCH_WORKERS:-4}
nginx_workers=${BENCH_NGINX_WORKERS:-2}
big=${BENCH_BIG:-104857600} # one large response per setup; 0 = skip
setups="slotproxy sp-shm proxy_http in-process"

httpd=/usr/sbin/apache2
mods=/usr/lib/apache2/modules
backend_bin=$build/slotproxy-backend/slotproxy-backend
module_so=$build/mod_slotproxy/mod_slotproxy.so
hello_so=$build/bench/apps/mod_benchhello.so
run=$build/bench-run
body='Hello, world'$'\n'
hz=$(getconf CLK_TCK)
ncpu=$(getconf _NPROCESSORS_ONLN)

die() { echo "httpd_bench: $*" >&2; exit 1; }

[ "$secs" -ge 3 ] 2>/dev/null || die "BENCH_SECONDS must be at least 3"
for f in "$backend_bin" "$module_so" "$hello_so"; do
    [ -e "$f" ] || die "$f missing (make all $hello_so)"
done
for t in wrk nginx ss curl; do
    command -v $t >/dev/null || die "$t not installed (scripts/deps.sh bench)"
done

user=""
[ "$(id -u)" -eq 0 ] && user=www-data

rm -rf "$run"
mkdir -p "$run"
chmod 755 "$run"

# ---- ports ------------------------------------------------------------------

# A port nobody uses, into PORT[$1] (not from a $(subshell): used_ports
# must survive, so that two servers of one run never get the same port).
used_ports=" "
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 20000))
        case "$used_ports" in *" $p "*) continue ;; esac
        if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )")" ]; then
            used_ports="$used_ports$p "
            PORT[$1]=$p
            return
        fi
    done
    die "no free port"
}

# ---- process bookkeeping ------------------------------------------------------

declare -A PID       # server name -> pid of its top process
started=""           # servers to stop, in start order

stop_server() {
    local name=$1 pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PID[$name]=""
}

stop_all() {
    local s
    for s in $started; do stop_server "$s"; done
    started=""
}
trap 'stop_all' EXIT
trap 'exit 130' INT TERM

# Children of a pid (one level: httpd's children and proxy child, the
# backend's workers, nginx's workers).
children() { pgrep -P "$1" 2>/dev/null | tr '\n' ' ' || true; }

# CPU time (ns) used so far by the given pids, all their threads (first
# field of /proc/PID/task/TID/schedstat: exact, where /proc/PID/stat counts
# in clock ticks); vanished pids count 0.
cpu_ns() {
    local p f t rest sum=0
    for p in "$@"; do
        for f in /proc/"$p"/task/*/schedstat; do
            { read -r t rest < "$f"; } 2>/dev/null || continue
            sum=$((sum + t))
        done
    done
    echo "$sum"
}

# "RSS_KB PSS_KB" summed over the given pids.
mem_kb() {
    local p k v u rss=0 pss=0
    for p in "$@"; do
        while read -r k v u; do
            [ "$k" = "VmRSS:" ] && rss=$((rss + v))
        done 2>/dev/null < "/proc/$p/status" || true
        while read -r k v u; do
            [ "$k" = "Pss:" ] && pss=$((pss + v))
        done 2>/dev/null < "/proc/$p/smaps_rollup" || true
    done
    echo "$rss $pss"
}

# Busy and total jiffies of the whole machine.
machine_ticks() {
    local cpu user nice sys idle iowait irq softirq steal rest
    read -r cpu user nice sys idle iowait irq softirq steal rest < /proc/stat
    echo "$((user + nice + sys + irq + softirq)) $((user + nice + sys + idle + iowait + irq + softirq + steal))"
}

now_ns() { date +%s%N; }

# ---- servers ------------------------------------------------------------------

wait_body() { # URL SECONDS: until URL answers the expected body
    local url=$1 tries=$(($2 * 10)) got
    for _ in $(seq $tries); do
        got=$(curl -s --max-time 2 "$url" 2>/dev/null; echo x) || true
        [ "$got" = "${body}x" ] && return 0
        sleep 0.1
    done
    return 1
}

start_backend() { # DIR PORT
    local d=$1 port=$2
    mkdir -p "$d"
    [ -n "$user" ] && chown "$user:$user" "$d"
    cat > "$d/backend.conf" <<EOC
# generated by bench/httpd_bench.sh
Listen tcp://127.0.0.1:$port
Listen shm:$d/link.shm
ErrorLog $d/backend.log
LogLevel warn
PidFile $d/backend.pid
Workers $workers
Handler /hello builtin:hello
Handler /echo builtin:echo
GracefulTimeout 2
EOC
    [ -n "$user" ] && printf 'User %s\nGroup %s\n' "$user" "$user" >> "$d/backend.conf"
    "$backend_bin" -t -f "$d/backend.conf" >/dev/null
    "$backend_bin" -X -f "$d/backend.conf" 2>>"$d/backend.log" &
    PID[backend]=$!
    started="$started backend"
}

start_nginx() { # DIR PORT
    local d=$1 port=$2
    mkdir -p "$d/tmp"
    cat > "$d/nginx.conf" <<EOC
# generated by bench/httpd_bench.sh
daemon off;
master_process on;
worker_processes $nginx_workers;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location / {
            default_type text/plain;
            return 200 "Hello, world\n";
        }
        location = /big {
            default_type application/octet-stream;
            alias $d/big.bin;
        }
    }
}
EOC
    [ "$big" -gt 0 ] && head -c "$big" /dev/zero > "$d/big.bin"
    nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" -t -q
    nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" &
    PID[nginx]=$!
    started="$started nginx"
}

start_httpd() { # SETUP MPM PORT BACKEND_ADDRESS
    local setup=$1 mpm=$2 port=$3 baddr=$4 d=$run/$mpm/httpd-$1
    mkdir -p "$d"
    [ -n "$user" ] && chown "$user:$user" "$d"
    "$top/scripts/httpd-conf.sh" "$d" "$port" "$mpm" "$module_so" > "$d/httpd.conf"
    {
        echo "# bench/httpd_bench.sh: sizing (the last value of a directive wins)"
        case "$mpm" in
        prefork) printf '%s\n' "ServerLimit 256" "MaxRequestWorkers 256" \
            "StartServers 256" "MinSpareServers 16" "MaxSpareServers 256" ;;
        *) printf '%s\n' "ServerLimit 8" "ThreadsPerChild 64" "ThreadLimit 64" \
            "StartServers 8" "MaxRequestWorkers 512" "MinSpareThreads 64" \
            "MaxSpareThreads 512" ;;
        esac
        echo "# setup: $setup"
        case "$setup" in
        slotproxy | sp-shm) cat <<EOC
SlotProxyBackend bench $baddr links=$links
SlotProxyPass /hello bench
SlotProxyPass /echo bench
<Location /slotproxy-status>
    SetHandler slotproxy-status
</Location>
EOC
            ;;
        proxy_http) cat <<EOC
LoadModule proxy_module $mods/mod_proxy.so
LoadModule proxy_http_module $mods/mod_proxy_http.so
ProxyPass /hello http://$baddr/hello enablereuse=on
ProxyPass /big http://$baddr/big enablereuse=on
EOC
            ;;
        in-process) cat <<EOC
LoadModule benchhello_module $hello_so
BenchHelloPass /hello
EOC
            ;;
        esac
    } >> "$d/httpd.conf"
    "$httpd" -t -f "$d/httpd.conf" >/dev/null 2>&1 || "$httpd" -t -f "$d/httpd.conf"
    # In a session of its own: prefork stops its children with
    # killpg(getpgrp(), SIGTERM), which would hit this script too.
    setsid "$httpd" -f "$d/httpd.conf" -DFOREGROUND &
    PID[$setup]=$!
    started="$setup $started" # httpd stops before its backend
}

# Every process of a setup: "httpd_pids|backend_pids".
setup_pids() {
    local s=$1 h b=""
    h="${PID[$s]} $(children "${PID[$s]}")"
    case "$s" in
    slotproxy | sp-shm) b="${PID[backend]} $(children "${PID[backend]}")" ;;
    proxy_http) b="${PID[nginx]} $(children "${PID[nginx]}")" ;;
    esac
    echo "$h|$b"
}

# ---- one row ----------------------------------------------------------------

declare -A R # results: R[mpm,conns,setup,field]

# The proxy child's pid (to split its CPU from the workers').
proxy_pid() { # SETUP
    curl -s --max-time 2 "http://127.0.0.1:${PORT[$1]}/slotproxy-status?auto" |
        awk -F': ' '$1 == "ProxyPid" { print $2 }'
}

to_us() { # wrk duration (12.3us, 1.2ms, 1.5s, 2.0m) -> microseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "ms") n *= 1000; else if (u == "s") n *= 1e6;
        else if (u == "m") n *= 6e7;
        printf "%.1f", n }'
}

run_row() { # MPM CONNS SETUP PASS
    local mpm=$1 c=$2 s=$3 pass=$4 port=${PORT[$3]} th=2 bport="" out pids hp bp ppid=""
    [ "$c" -eq 1 ] && th=1
    case "$s" in
    slotproxy) bport=${PORT[backend]} ;;
    sp-shm) bport=shm ;;
    proxy_http) bport=${PORT[nginx]} ;;
    esac
    local url="http://127.0.0.1:$port/hello"
    out=$run/$mpm/wrk-$s-c$c-p$pass.txt
    wrk -t "$th" -c "$c" -d "${warm}s" "$url" > /dev/null
    pids=$(setup_pids "$s")
    hp=${pids%%|*} bp=${pids#*|}
    case "$s" in slotproxy | sp-shm) ppid=$(proxy_pid "$s") ;; esac
    local hw="" p
    for p in $hp; do [ "$p" = "$ppid" ] || hw="$hw $p"; done

    wrk --latency -t "$th" -c "$c" -d "${secs}s" "$url" > "$out" &
    local wpid=$! t0 maxconn=0 n mem="" c0="" c1="" m0 m1 w0 w1
    t0=$(now_ns)
    local win0=1 win1=$((secs - 1))
    for i in $(seq 1 $((secs - 1))); do
        sleep $(awk -v t0="$t0" -v i="$i" -v now="$(now_ns)" \
            'BEGIN { d = (t0 + i * 1e9 - now) / 1e9; printf "%.3f", (d > 0 ? d : 0) }')
        if [ "$bport" = shm ]; then
            n=$(ss -Hxn | awk -v p="$run/$mpm/backend/link.shm" '$2 == "ESTAB" && $5 == p' | wc -l)
            [ "$n" -gt "$maxconn" ] && maxconn=$n
        elif [ -n "$bport" ]; then
            n=$(ss -Htn state established "( dport = :$bport )" | wc -l)
            [ "$n" -gt "$maxconn" ] && maxconn=$n
        fi
        if [ "$i" -eq "$win0" ]; then
            w0=$(now_ns); m0=$(machine_ticks)
            c0="$(cpu_ns $hw) $(cpu_ns $ppid) $(cpu_ns $bp) $(cpu_ns $wpid)"
        fi
        if [ "$i" -eq "$win1" ]; then
            w1=$(now_ns); m1=$(machine_ticks)
            c1="$(cpu_ns $hw) $(cpu_ns $ppid) $(cpu_ns $bp) $(cpu_ns $wpid)"
            # Memory last, outside the CPU window: PSS makes the kernel
            # walk every mapping (a noticeable load with 256 children).
            mem="$(mem_kb $hp) $(mem_kb $bp)"
        fi
    done
    wait "$wpid" || die "wrk failed: $(cat "$out")"

    # wrk's figures.
    local rps p50 p99 non2xx errs
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
    non2xx=$(awk '/^  Non-2xx or 3xx responses:/ { print $NF }' "$out")
    errs=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")
    # CPU per request over the window: processes in ns, the machine in ticks.
    local cpu
    cpu=$(awk -v c0="$c0" -v c1="$c1" -v m0="$m0" -v m1="$m1" -v w0="$w0" -v w1="$w1" \
        -v rps="${rps:-0}" -v hz="$hz" 'BEGIN {
        split(c0, a); split(c1, b); split(m0, x); split(m1, y)
        secs = (w1 - w0) / 1e9
        if (secs <= 0 || rps <= 0) { print "- - - - - -"; exit }
        n = secs * rps # requests in the window
        h = (b[1] - a[1]) / 1e3 / n; p = (b[2] - a[2]) / 1e3 / n
        k = (b[3] - a[3]) / 1e3 / n; w = (b[4] - a[4]) / 1e3 / n
        tot = (y[1] - x[1]) * 1e6 / hz / n
        printf "%.1f %.1f %.1f %.1f %.1f %.0f\n", h, p, k, w, tot - h - p - k - w,
            100 * (y[1] - x[1]) / (y[2] - x[2])
    }')

    [ -n "${BENCH_DEBUG:-}" ] && echo "$mpm c=$c $s pass $pass: c0=[$c0] c1=[$c1]" \
        "m0=[$m0] m1=[$m1] w=[$w0 $w1] wrk=$wpid cpu=[$cpu]" >> "$run/debug.log"

    # Merge into R: the figures of the pass with the most req/s; errors
    # summed and backend connections the largest over all passes.
    local k="$mpm,$c,$s"
    R[$k,non2xx]=$((${R[$k,non2xx]:-0} + ${non2xx:-0}))
    R[$k,errs]=$((${R[$k,errs]:-0} + ${errs:-0}))
    if [ -n "$bport" ]; then
        [ "$maxconn" -gt "${R[$k,conns]:-0}" ] && R[$k,conns]=$maxconn
        R[$k,conns]=${R[$k,conns]:-0}
    else
        R[$k,conns]=-
    fi
    R[$k,passes]="${R[$k,passes]:-}${R[$k,passes]:+ }${rps:-0}"
    if [ -z "${R[$k,rps]:-}" ] ||
        awk -v a="${rps:-0}" -v b="${R[$k,rps]}" 'BEGIN { exit !(a > b) }'; then
        R[$k,rps]=${rps:-0}
        R[$k,p50]=$p50
        R[$k,p99]=$p99
        R[$k,mem]=$mem
        R[$k,cpu]=$cpu
    fi
}

# ---- output -------------------------------------------------------------------

fmt_us() { awk -v v="$1" 'BEGIN { if (v >= 1000) printf "%.2fms", v / 1000; else printf "%.0fus", v }'; }

print_table() { # MPM
    local mpm=$1 c s
    printf '\n%s MPM: wrk --latency, keep-alive, %s s per run after %s s of warm-up; best of %s passes\n' \
        "$mpm" "$secs" "$warm" "$passes"
    printf '  %5s %-11s %9s %7s %9s %9s %6s %6s %6s %16s %6s  %s\n' \
        conns setup "req/s" "vs pxy" p50 p99 non2xx errors "be-cn" "RSS MB htd+be" "PSS MB" "req/s of each pass"
    for c in $conns; do
        for s in $setups; do
            local rps=${R[$mpm,$c,$s,rps]} ref=${R[$mpm,$c,proxy_http,rps]:-0}
            set -- ${R[$mpm,$c,$s,mem]:-0 0 0 0}
            printf '  %5s %-11s %9.0f %7s %9s %9s %6s %6s %6s %16s %6s  %s\n' \
                "$c" "$s" "$rps" \
                "$(awk -v a="$rps" -v b="$ref" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')" \
                "$(fmt_us "${R[$mpm,$c,$s,p50]}")" "$(fmt_us "${R[$mpm,$c,$s,p99]}")" \
                "${R[$mpm,$c,$s,non2xx]}" "${R[$mpm,$c,$s,errs]}" "${R[$mpm,$c,$s,conns]}" \
                "$(awk -v h="$1" -v b="$3" 'BEGIN { printf "%.0f+%.0f=%.0f", h/1024, b/1024, (h+b)/1024 }')" \
                "$(awk -v h="$2" -v b="$4" 'BEGIN { printf "%.0f", (h+b)/1024 }')" \
                "$(awk -v l="${R[$mpm,$c,$s,passes]}" 'BEGIN { n = split(l, a); for (i = 1; i <= n; i++) printf "%s%.0f", (i > 1 ? " " : ""), a[i] }')"
        done
    done
    printf '\n  CPU per request over the middle of each run, us (servers = httpd + proxy child + backend;\n'
    printf '  rest = everything else on the machine; busy = machine CPU use out of %d CPUs)\n' "$ncpu"
    printf '  %5s %-11s %9s %9s %9s %9s %9s %9s %6s\n' conns setup "httpd wk" "proxy ch" "backend" \
        "wrk" "rest" "servers" busy
    for c in $conns; do
        for s in $setups; do
            set -- ${R[$mpm,$c,$s,cpu]}
            local pc=$2 bc=$3
            case "$s" in slotproxy | sp-shm) ;; *) pc=- ;; esac
            [ "$s" = in-process ] && bc=-
            printf '  %5s %-11s %9s %9s %9s %9s %9s %9s %5s%%\n' "$c" "$s" "$1" "$pc" "$bc" "$4" "$5" \
                "$(awk -v a="$1" -v b="$2" -v k="$3" 'BEGIN { printf "%.1f", a + b + k }')" "$6"
        done
    done
}

verdict() { # LABEL RATIO TARGET MET
    printf '  %-52s %8s  %-10s %s\n' "$1" "$2" "$3" "$4"
}

print_targets() { # MPM
    local mpm=$1 a b q met s
    printf '\ntargets (issue 4), %s MPM, from the figures above\n' "$mpm"
    for s in slotproxy sp-shm; do
        a=${R[$mpm,64,$s,rps]:-} b=${R[$mpm,64,proxy_http,rps]:-}
        if [ -n "$a" ] && [ -n "$b" ]; then
            q=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
            met=$(awk -v q="$q" 'BEGIN { print (q >= 1.25 ? "met" : "NOT met") }')
            verdict "c=64 req/s $s / proxy_http" "${q}x" ">= 1.25x" "$met"
            local bc=${R[$mpm,64,$s,conns]}
            met=$([ "$bc" -le "$links" ] && echo met || echo "NOT met")
            verdict "c=64 backend connections, $s (proxy_http: ${R[$mpm,64,proxy_http,conns]})" \
                "$bc" "<= $links" "$met"
        else
            verdict "c=64 rows, $s" "-" "" "not measured"
        fi
        a=${R[$mpm,1,$s,p50]:-} b=${R[$mpm,1,proxy_http,p50]:-}
        if [ -n "$a" ] && [ -n "$b" ]; then
            q=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
            met=$(awk -v q="$q" 'BEGIN { print (q <= 1.5 ? "met" : "NOT met") }')
            verdict "c=1 p50 $s / proxy_http" "${q}x" "<= 1.5x" "$met"
        else
            verdict "c=1 rows, $s" "-" "" "not measured"
        fi
    done
}

# One large response through each proxy (BENCH_BIG bytes, curl to
# /dev/null, best of 3): streaming throughput, which the small /hello rows
# do not show (a stall in the response path once cost slotproxy 60x here).
print_download() { # MPM
    local mpm=$1 s url t sz best
    [ "$big" -gt 0 ] || return 0
    printf '\n%s MPM: one response of %s bytes through httpd (curl, best of 3)\n' "$mpm" "$big"
    for s in slotproxy sp-shm proxy_http; do
        case "$s" in
        slotproxy | sp-shm) url="http://127.0.0.1:${PORT[$s]}/echo?size=$big" ;;
        proxy_http) url="http://127.0.0.1:${PORT[$s]}/big" ;;
        esac
        best=""
        for _ in 1 2 3; do
            read -r t sz < <(curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "$url")
            [ "${sz%.*}" = "$big" ] || die "$mpm $s: $url gave ${sz:-nothing} bytes, not $big"
            best=$(awk -v a="$t" -v b="${best:-1e9}" 'BEGIN { print (a < b ? a : b) }')
        done
        awk -v s="$s" -v t="$best" -v n="$big" 'BEGIN {
            printf "  %-11s %8.0f ms  %8.0f MB/s\n", s, t * 1000, n / 1e6 / t }'
    done
}

# ---- main -------------------------------------------------------------------

declare -A PORT
load=$(cut -d' ' -f1 /proc/loadavg)
printf 'httpd_bench: %s CPUs (%s), %s MB RAM; load average %s at start\n' "$ncpu" \
    "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
    "$(awk '/^MemTotal/ { printf "%.0f", $2 / 1024 }' /proc/meminfo)" "$load"
printf '  %s, %s, %s; slotproxy links=%s, backend Workers %s, nginx worker_processes %s\n' \
    "$($httpd -v | awk -F': ' '/version/ { print $2 }')" "$(nginx -v 2>&1 | sed 's/.*: //')" \
    "$(wrk -v 2>&1 | awk '{ print $1, $2; exit }')" "$links" "$workers" "$nginx_workers"
printf '  wrk shares the CPUs with httpd, the backend and nginx: compare rows of this run only\n'

for mpm in $mpms; do
    mkdir -p "$run/$mpm"
    chmod 755 "$run/$mpm"
    for k in backend nginx $setups; do free_port "$k"; done
    start_backend "$run/$mpm/backend" "${PORT[backend]}"
    start_nginx "$run/$mpm/nginx" "${PORT[nginx]}"
    start_httpd slotproxy "$mpm" "${PORT[slotproxy]}" "tcp://127.0.0.1:${PORT[backend]}"
    start_httpd sp-shm "$mpm" "${PORT[sp-shm]}" "shm:$run/$mpm/backend/link.shm"
    start_httpd proxy_http "$mpm" "${PORT[proxy_http]}" "127.0.0.1:${PORT[nginx]}"
    start_httpd in-process "$mpm" "${PORT[in-process]}" ""
    for s in $setups; do
        wait_body "http://127.0.0.1:${PORT[$s]}/hello" 20 ||
            die "$mpm $s: no correct answer on port ${PORT[$s]} (see $run/$mpm)"
    done
    printf '\n%s MPM: ports httpd slotproxy %s, sp-shm %s, proxy_http %s, in-process %s; backend %s, nginx %s\n' \
        "$mpm" "${PORT[slotproxy]}" "${PORT[sp-shm]}" "${PORT[proxy_http]}" "${PORT[in-process]}" \
        "${PORT[backend]}" "${PORT[nginx]}"
    for s in $setups; do
        hdr=$(curl -s -D - -o /dev/null "http://127.0.0.1:${PORT[$s]}/hello" | tr -d '\r' |
            awk 'NR > 1 && NF { printf "%s%s", sep, $1; sep = " " }')
        hb=$(curl -s -D - -o /dev/null "http://127.0.0.1:${PORT[$s]}/hello" | wc -c)
        printf '  %-11s body ok (13 bytes), head %s bytes: %s\n' "$s" "$hb" "$hdr"
    done

    for c in $conns; do
        for pass in $(seq "$passes"); do
            for s in $setups; do
                run_row "$mpm" "$c" "$s" "$pass"
            done
        done
    done

    # After the runs: the answers are still right, the logs are clean.
    for s in $setups; do
        wait_body "http://127.0.0.1:${PORT[$s]}/hello" 5 ||
            die "$mpm $s: wrong answer after the runs"
    done
    print_table "$mpm"
    print_download "$mpm"
    for s in slotproxy sp-shm; do
        status=$(curl -s "http://127.0.0.1:${PORT[$s]}/slotproxy-status?auto")
        printf '\n  %s status after the runs: %s' "$s" "$(echo "$status" | awk -F': ' '
            $1 ~ /^(Backend0(LinksUp|Requests|Retries|Answered50[234])|RejectedFull|RejectedTimeout|ProxyRestarts|OutputStalls)$/ {
                printf "%s%s=%s", sep, $1, $2; sep = " " }')"
    done
    echo
    printf '  log lines at [warn] or worse: '
    for f in "$run/$mpm"/httpd-*/error.log "$run/$mpm/backend/backend.log" "$run/$mpm/nginx/error.log"; do
        n=$(grep -c -E '[[:]](warn|error|crit|alert|emerg)\]' "$f" 2>/dev/null || true)
        printf '%s %s  ' "${f#"$run/$mpm/"}" "${n:-0}"
    done
    echo
    print_targets "$mpm"
    stop_all
done
printf '\nhttpd_bench: load average %s at the end\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
