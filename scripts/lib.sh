# shellcheck shell=bash
# Shared helpers for scripts/setup and scripts/test-db. Source it, don't run it.
#
# Conventions: progress and errors go to stderr as "<prefix>: ...", so that a
# script's stdout stays free for its machine-readable result.

METATILED_LOG_PREFIX=${METATILED_LOG_PREFIX:-setup}

log() { printf '%s: %s\n' "$METATILED_LOG_PREFIX" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$METATILED_LOG_PREFIX" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$METATILED_LOG_PREFIX" "$*" >&2
    exit 1
}

# An unexpected failure (set -e) still ends with a one-line reason. Only the
# top-level shell reports, so a failing $(...) is not reported twice.
on_err() {
    local rc=$? line=$1 cmd=$2
    if ((BASH_SUBSHELL == 0)); then
        printf '%s: error: command failed with status %s (line %s): %s\n' \
            "$METATILED_LOG_PREFIX" "$rc" "$line" "$cmd" >&2
    fi
    exit "$rc"
}
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR

# The URL with its password hidden, for log lines.
redact_url() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

pkg_installed() {
    command -v dpkg-query >/dev/null 2>&1 &&
        [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# A package is "present" when dpkg says so, or when the command it provides is
# on PATH (a tool built from source, or a non-Debian system). "pkg:cmd" names
# the command; a bare "pkg" is checked with dpkg alone.
package_present() {
    local pkg=${1%%:*} cmd=
    [[ $1 == *:* ]] && cmd=${1#*:}
    pkg_installed "$pkg" && return 0
    [[ -n $cmd ]] && command -v "$cmd" >/dev/null 2>&1 && return 0
    return 1
}

APT_LOG=${APT_LOG:-${TMPDIR:-/tmp}/metatiled-apt.log}
APT_UPDATED=0

apt_quiet() {
    DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 \
        -o DPkg::Lock::Timeout=120 "$@" >>"$APT_LOG" 2>&1
}

# ensure_packages SPEC...: installs the missing ones with apt (update once, one
# retry), with service starts blocked while it runs. No apt work at all when
# everything is present.
ensure_packages() {
    local spec missing=()
    for spec in "$@"; do
        package_present "$spec" || missing+=("${spec%%:*}")
    done
    ((${#missing[@]} == 0)) && return 0

    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages (${missing[*]}) and no apt-get here to install them; install them by hand"
    [[ $(id -u) -eq 0 ]] ||
        die "missing packages (${missing[*]}); run as root or install them: apt-get install ${missing[*]}"

    log "installing ${missing[*]} (apt log: $APT_LOG)"
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Post-install scripts must not try to start services (no systemd here).
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local ok=0
    if ((APT_UPDATED == 0)); then
        if apt_quiet update || { sleep 3 && apt_quiet update; }; then
            APT_UPDATED=1
        else
            ((made_policy)) && rm -f /usr/sbin/policy-rc.d
            die "apt-get update failed; see $APT_LOG"
        fi
    fi
    if apt_quiet install --no-install-recommends "${missing[@]}"; then
        ok=1
    else
        warn "apt-get install failed once; repairing and retrying"
        sleep 3
        apt_quiet -f install || true
        DEBIAN_FRONTEND=noninteractive dpkg --configure -a >>"$APT_LOG" 2>&1 || true
        apt_quiet install --no-install-recommends "${missing[@]}" && ok=1
    fi
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    ((ok)) || die "apt-get install ${missing[*]} failed twice; see $APT_LOG"
}

# as_postgres CMD...: runs CMD as the postgres OS user (peer auth on the socket).
as_postgres() {
    if [[ $(id -un) == postgres ]]; then
        (cd / && "$@")
    elif [[ $(id -u) -eq 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u postgres -- "$@")
        else
            (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
        fi
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        (cd / && sudo -n -u postgres -- "$@")
    else
        die "acting as the postgres superuser needs root or passwordless sudo; or pass DATABASE_URL"
    fi
}

# The SQL files whose tables scripts/setup derives from an import (the sea, the
# low-zoom tables), and their fingerprint: recorded in metatiled.import_info
# (derived_sha256) when they are applied, so a change to either file is seen.
derived_sql_files() { printf '%s\n' "$REPO/sql/water_polygons.sql" "$REPO/sql/lowzoom.sql"; }
derived_sql_sha() {
    local files
    mapfile -t files < <(derived_sql_files)
    cat "${files[@]}" | sha256sum | cut -c1-16
}
