#!/usr/bin/env bash
# Runs a command; if one of its test binaries (a process whose executable
# lies under target/*/deps/) runs longer than WATCHDOG_SECS (default 900),
# prints every thread's stack of that process (gdb) and kills it, so that a
# hang fails CI at once with the stacks that explain it instead of running
# into CI's own time limit with nothing to show.
#   scripts/watchdog.sh cargo test --workspace
set -uo pipefail
limit="${WATCHDOG_SECS:-900}"

"$@" &
main=$!

watch() {
    declare -A seen
    while kill -0 "$main" 2>/dev/null; do
        sleep 5
        for dir in /proc/[0-9]*; do
            pid="${dir#/proc/}"
            exe="$(readlink "$dir/exe" 2>/dev/null)" || continue
            case "$exe" in */target/*/deps/*) ;; *) continue ;; esac
            # Only our own descendants.
            anc="$pid"
            while [ -n "$anc" ] && [ "$anc" != 1 ] && [ "$anc" != "$main" ]; do
                anc="$(awk '{print $4}' "/proc/$anc/stat" 2>/dev/null)"
            done
            [ "$anc" = "$main" ] || continue
            age="$(ps -o etimes= -p "$pid" 2>/dev/null | tr -d ' ')"
            [ -n "$age" ] || continue
            if [ "$age" -gt "$limit" ] && [ -z "${seen[$pid]:-}" ]; then
                seen[$pid]=1
                echo "watchdog: $exe (pid $pid) has run ${age}s (limit ${limit}s); its threads:" >&2
                if command -v gdb >/dev/null; then
                    timeout 120 gdb -p "$pid" -batch -ex "thread apply all bt 40" 2>&1 |
                        grep -E '^(Thread|#)' >&2
                else
                    echo "watchdog: gdb is not installed; no stacks" >&2
                fi
                kill -9 "$pid" 2>/dev/null
            fi
        done
    done
}
watch &
watcher=$!
wait "$main"
rc=$?
kill "$watcher" 2>/dev/null
wait "$watcher" 2>/dev/null
exit "$rc"
