#!/usr/bin/env bash
# Starts nginx in front of the example app (which must already run, e.g.
# `npm run example` in another terminal) and prints the URL to open.
#
# Safe without root: nginx gets its own prefix, config, pid file, temp paths
# and logs in a fresh temporary directory (removed on exit), runs in the
# foreground (daemon off) and stops on Ctrl-C / SIGTERM.
#
# Environment:
#   APP_ADDR    where the app listens        default 127.0.0.1:${PORT:-3000}
#               (several, comma-separated, for instances to restart one by one)
#   UPSTREAM_OPTIONS  parameters for each upstream server, e.g. "max_fails=0"   default none
#   NGINX_PORT  port nginx listens on        default: a free port
#   NGINX_HOST  address nginx listens on     default 127.0.0.1
#   BASE_PATH   the app's hub mount point    default /sse-server
#   NGINX_BIN   the nginx binary             default: nginx on PATH, else /usr/sbin/nginx
#   KEEP_RUN_DIR=1 keep the temp dir (config, logs) after exit
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
template="$here/nginx.conf.template"

nginx_bin="${NGINX_BIN:-$(command -v nginx || true)}"
[ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx
if [ -z "$nginx_bin" ] || [ ! -x "$nginx_bin" ]; then
  echo "run-nginx: nginx not found. Install it (Debian/Ubuntu: apt-get install nginx) or set NGINX_BIN." >&2
  exit 127
fi

app_addr="${APP_ADDR:-127.0.0.1:${PORT:-3000}}"
if ! [[ "$app_addr" =~ ^[][A-Za-z0-9.:_-]+(,[][A-Za-z0-9.:_-]+)*$ ]]; then
  echo "run-nginx: APP_ADDR must be host:port, or several separated by commas; got \"$app_addr\"" >&2
  exit 2
fi
upstream_options="${UPSTREAM_OPTIONS:-}"
if ! [[ "$upstream_options" =~ ^[A-Za-z0-9_=.\ ]*$ ]]; then
  echo "run-nginx: UPSTREAM_OPTIONS must be nginx server parameters such as \"max_fails=0\"; got \"$upstream_options\"" >&2
  exit 2
fi
# One `server` line per address in the upstream block.
upstream_servers="${app_addr//,/ $upstream_options; server } $upstream_options"
listen_host="${NGINX_HOST:-127.0.0.1}"
base_path="${BASE_PATH:-/sse-server}"
base_path="/${base_path#/}"
base_path="${base_path%/}"
if ! [[ "$base_path" =~ ^(/[A-Za-z0-9._~-]+)+$ ]]; then
  echo "run-nginx: BASE_PATH must be a simple path such as /sse-server; got \"${BASE_PATH:-}\"" >&2
  exit 2
fi

free_port() {
  # Ask the kernel for a free port (node is there: this is a Node project).
  node -e 'const s=require("net").createServer();s.listen(0,process.argv[1],()=>{console.log(s.address().port);s.close()})' "$listen_host"
}

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/sse-example-nginx.XXXXXX")"
# As root, nginx workers run as "nobody": they must be able to enter the dir.
chmod 755 "$run_dir"
nginx_pid=""

cleanup() {
  if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
    kill -TERM "$nginx_pid" 2>/dev/null || true   # fast shutdown: open event streams are cut, browsers reconnect
    wait "$nginx_pid" 2>/dev/null || true
  fi
  if [ "${KEEP_RUN_DIR:-}" = "1" ]; then
    echo "run-nginx: kept $run_dir" >&2
  else
    rm -rf "$run_dir"
  fi
}
trap cleanup EXIT
trap 'exit 0' TERM INT HUP

listening() {
  (exec 3<>"/dev/tcp/$listen_host/$1") 2>/dev/null
}

attempts=1
[ -z "${NGINX_PORT:-}" ] && attempts=5   # a free port can be taken between probe and bind: try again
for ((try = 1; try <= attempts; try++)); do
  port="${NGINX_PORT:-$(free_port)}"
  listen_addr="$listen_host:$port"
  [[ "$listen_host" == *:* ]] && listen_addr="[$listen_host]:$port"
  sed -e "s|@RUN_DIR@|$run_dir|g" \
      -e "s|@APP_ADDR@|$upstream_servers|g" \
      -e "s|@LISTEN_ADDR@|$listen_addr|g" \
      -e "s|@BASE_PATH@|$base_path|g" \
      "$template" > "$run_dir/nginx.conf"
  : > "$run_dir/error.log"

  # -p: prefix for relative paths; -c: our config; -e: error log before the config is read.
  "$nginx_bin" -p "$run_dir" -c "$run_dir/nginx.conf" -e "$run_dir/error.log" &
  nginx_pid=$!

  for _ in $(seq 1 100); do
    if ! kill -0 "$nginx_pid" 2>/dev/null; then break; fi
    if listening "$port"; then break; fi
    sleep 0.05
  done
  if kill -0 "$nginx_pid" 2>/dev/null && listening "$port"; then
    break
  fi
  wait "$nginx_pid" 2>/dev/null || true
  nginx_pid=""
  if [ "$try" -ge "$attempts" ] || ! grep -q "Address already in use" "$run_dir/error.log"; then
    echo "run-nginx: nginx did not start; its error log:" >&2
    cat "$run_dir/error.log" >&2
    exit 1
  fi
done

host_for_url="$listen_host"
[[ "$listen_host" == *:* ]] && host_for_url="[$listen_host]"
echo "run-nginx: nginx $("$nginx_bin" -v 2>&1 | sed 's|.*/||') (pid $nginx_pid) proxying to $app_addr; hub at $base_path/, logs in $run_dir"
# Keep this line's shape: tests look for it.
echo "run-nginx: listening; open http://$host_for_url:$port/"

set +e
wait "$nginx_pid"
status=$?
nginx_pid=""
echo "run-nginx: nginx exited with status $status" >&2
exit "$status"
