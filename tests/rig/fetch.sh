#!/usr/bin/env bash
# fetch.sh VERSION
# Idempotently downloads the Apache RocketMQ jars (namesrv, broker, tools, client
# and all their dependencies) for VERSION into
#   ${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}/lib-VERSION
# using a generated pom in .../pom-VERSION/pom.xml and
# `mvn dependency:copy-dependencies`. A marker file lib-VERSION/.complete is
# written only after a successful download; when it exists nothing is done.
# Prints the lib dir on stdout (Maven output goes to .../mvn-VERSION.log).
#
# Special case 4.9.8: rocketmq-namesrv, rocketmq-broker and rocketmq-filter
# 4.9.8 were never published to Maven Central (only client/tools/common/remoting/
# store/acl/srvutil/logging were). For 4.9.8 those three modules are taken from
# 4.9.7 while every other rocketmq-* module is pinned to 4.9.8, so the broker
# reports version V4_9_8 (MQVersion lives in rocketmq-common). The only code
# differences 4.9.7 -> 4.9.8 in those modules are the config-update blacklist
# validation (namesrv/broker updateConfig) and the removal of the
# GET_BROKER_CLUSTER_ACL_CONFIG admin command.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 VERSION   (e.g. 5.3.3 or 4.9.8)" >&2
  exit 2
fi
VERSION="$1"
CACHE="${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}"
POM_DIR="$CACHE/pom-$VERSION"
LIB="$CACHE/lib-$VERSION"

if [[ -f "$LIB/.complete" ]]; then
  echo "$LIB"
  exit 0
fi

command -v mvn >/dev/null || { echo "fetch.sh: mvn not found in PATH" >&2; exit 1; }
mkdir -p "$POM_DIR"

# serialize concurrent fetches of the same version
if command -v flock >/dev/null; then
  exec 9>"$CACHE/.fetch-$VERSION.lock"
  flock 9
  if [[ -f "$LIB/.complete" ]]; then
    echo "$LIB"
    exit 0
  fi
fi

# server modules missing from Maven Central for some versions
SERVER_VERSION="$VERSION"
case "$VERSION" in
  4.9.8) SERVER_VERSION=4.9.7 ;;
esac

managed=""
if [[ "$SERVER_VERSION" != "$VERSION" ]]; then
  # force every other (transitive) rocketmq module to VERSION
  for m in rocketmq-common rocketmq-remoting rocketmq-store rocketmq-acl rocketmq-srvutil rocketmq-logging rocketmq-client rocketmq-tools; do
    managed+="<dependency><groupId>org.apache.rocketmq</groupId><artifactId>$m</artifactId><version>$VERSION</version></dependency>
"
  done
fi

dep() { echo "<dependency><groupId>org.apache.rocketmq</groupId><artifactId>$1</artifactId><version>$2</version></dependency>"; }

pom_tmp="$POM_DIR/pom.xml.tmp.$$"
{
  echo '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
  echo "<groupId>rig</groupId><artifactId>rmq-$VERSION</artifactId><version>1</version><packaging>pom</packaging>"
  if [[ -n "$managed" ]]; then
    echo "<dependencyManagement><dependencies>"
    printf '%s' "$managed"
    echo "</dependencies></dependencyManagement>"
  fi
  echo "<dependencies>"
  dep rocketmq-namesrv "$SERVER_VERSION"
  dep rocketmq-broker "$SERVER_VERSION"
  dep rocketmq-tools "$VERSION"
  dep rocketmq-client "$VERSION"
  echo "</dependencies></project>"
} >"$pom_tmp"
mv -f "$pom_tmp" "$POM_DIR/pom.xml"

LOG="$CACHE/mvn-$VERSION.log"
rm -rf "$LIB.tmp"
echo "fetch.sh: downloading RocketMQ $VERSION jars (log: $LOG)" >&2
if ! mvn -q -B -f "$POM_DIR/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIB.tmp" >"$LOG" 2>&1; then
  echo "rc=1" >>"$LOG"
  echo "fetch.sh: maven failed for $VERSION; tail of $LOG:" >&2
  tail -n 20 "$LOG" >&2
  exit 1
fi
echo "rc=0" >>"$LOG"
# sanity: the main classes must be there
for j in rocketmq-namesrv rocketmq-broker rocketmq-tools rocketmq-client; do
  ls "$LIB.tmp"/$j-*.jar >/dev/null 2>&1 || { echo "fetch.sh: $j jar missing after download" >&2; exit 1; }
done
rm -rf "$LIB"
mv "$LIB.tmp" "$LIB"
touch "$LIB/.complete"
echo "$LIB"
