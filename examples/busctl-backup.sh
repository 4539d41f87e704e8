#!/usr/bin/env bash
# A whole backup with busctl alone: the D-Bus API is the product's interface, and a shell script
# can drive it. usage: busctl-backup.sh VOLUME [COMMAND...]
# Makes a set with the writers (auto-release false, since every busctl call is a connection of
# its own), exposes the copy read-only, runs COMMAND with the copy's path as its last argument
# (default: ls -l), tells the writers the backup is complete, and deletes the set. Any failure
# aborts and deletes the set. busctl reaches the system bus, or DBUS_SYSTEM_BUS_ADDRESS.
set -euo pipefail
volume=${1:?usage: busctl-backup.sh VOLUME [COMMAND...]}
shift
[ $# -gt 0 ] || set -- ls -l
S=org.shadowcopy.ShadowCopy1
B=(busctl --timeout=120 ${DBUS_SYSTEM_BUS_ADDRESS:+--address="$DBUS_SYSTEM_BUS_ADDRESS"})
call() { "${B[@]}" call $S "$@"; }
value() { awk '{print $2}' | tr -d '"'; }
prop() { "${B[@]}" get-property $S "$1" "$S.$2" "$3" | value; }

# Runs a phase of the set as a job, waits for it, and fails unless it succeeded.
phase() {
  local job state
  job=$(call "$set" $S.SnapshotSet "$1" 'a{sv}' 0 | value)
  call "$job" $S.Job Wait u 600000 >/dev/null
  state=$(prop "$job" Job State)
  echo "$1: $state"
  [ "$state" = succeeded ] || { echo "$1 failed: $(prop "$job" Job ErrorName): $(prop "$job" Job ErrorMessage)" >&2; return 1; }
}

set=$(call /org/shadowcopy/ShadowCopy1 $S.Coordinator StartSnapshotSet 'a{sv}' 2 auto-release b false description s "busctl backup" | value)
trap 'call "$set" $S.SnapshotSet Abort "a{sv}" 0 2>/dev/null; call "$set" $S.SnapshotSet Delete "a{sv}" 0 2>/dev/null || true' ERR
echo "set: $set"
phase GatherWriterMetadata
snapshot=$(call "$set" $S.SnapshotSet AddVolume 'sa{sv}' "$volume" 0 | value)
phase PrepareForBackup
phase DoSnapshotSet
echo "consistency: $(prop "$set" SnapshotSet Consistency)"
exposed=$(call "$snapshot" $S.Snapshot Expose 'a{sv}' 0 | value)
echo "exposed: $exposed"
"$@" "$exposed"
call "$snapshot" $S.Snapshot Unexpose 'a{sv}' 0
phase BackupComplete
call "$set" $S.SnapshotSet Delete 'a{sv}' 0
trap - ERR
echo "done"
