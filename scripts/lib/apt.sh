# shellcheck shell=bash
# apt_install PKG...: installs the Debian packages that are missing (sourced by scripts/test.sh
# and scripts/bench.sh). Needs root or sudo (as on CI machines). The scripts start their own
# servers on loopback ports, so packages are kept from starting system services (nginx on
# port 80, HAProxy, ...) while they install.

apt_install() {
  local missing=() pkg
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  printf '\n==> %s\n' "installing Debian packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  local policy=/usr/sbin/policy-rc.d made_policy=false
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && made_policy=true
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if $made_policy; then $sudo rm -f "$policy"; fi
}
