#!/usr/bin/python3
"""An external shadowcopy provider in Python (python3-dbus): copies a volume's files.

It implements the contract's Provider interface and registers with RegisterProvider (as root).
A copy of a volume is a directory under --store holding the volume's files, made in
CommitSnapshots while the coordinator holds the volume's filesystem frozen, so the copy is
filesystem-consistent. This shows the shape of an external provider; a real one would make
block-level copies (a SAN, a hypervisor, a storage array).

It logs each call, one per line (monotonic nanoseconds first), to --log, and for tests can:
  --volume PATH   support this mount point (repeatable; default: any mount point not on btrfs);
  --fail METHOD   answer METHOD with an error;
  --hang METHOD   never answer METHOD.
"""
import argparse
import errno
import fcntl
import os
import shutil
import sys
import time

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

NAME = "org.shadowcopy.ShadowCopy1"
ROOT = "/org/shadowcopy/ShadowCopy1"
IFACE = NAME + ".Provider"
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
BTRFS_MAGIC = 0x9123683E


class Failed(dbus.DBusException):
    _dbus_error_name = NAME + ".Error.Failed"


def frozen(volume):
    """Whether the filesystem of `volume` is frozen: freezing it again then fails with EBUSY."""
    fd = os.open(volume, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
    except OSError as e:
        return e.errno == errno.EBUSY
    else:
        fcntl.ioctl(fd, FITHAW, 0)
        return False
    finally:
        os.close(fd)


class Provider(dbus.service.Object):
    def __init__(self, bus, path, args):
        super().__init__(bus, path)
        self.args = args
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.sets = {}  # set path -> [(snapshot id, volume)]
        self.made = {}  # snapshot id -> copy directory

    def note(self, text):
        if self.log:
            self.log.write("%d %s\n" % (time.monotonic_ns(), text))

    def enter(self, method, reply, error):
        """Logs `method`; False when it must fail or hang instead of running."""
        self.note(method)
        if self.args.fail == method:
            error(Failed("%s fails %s on purpose" % (self.args.name, method)))
            return False
        return self.args.hang != method

    @dbus.service.method(IFACE, in_signature="sa{sv}", out_signature="b")
    def IsVolumeSupported(self, volume, options):
        if self.args.volume:
            return volume in self.args.volume
        return os.path.ismount(volume) and os.statvfs(volume) is not None and not self.on_btrfs(volume)

    @staticmethod
    def on_btrfs(volume):
        # statfs's f_type is not in os.statvfs; /proc/self/mounts has the type.
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if fields[1] == volume:
                    return fields[2] == "btrfs"
        return False

    @dbus.service.method(IFACE, in_signature="ossa{sv}", async_callbacks=("reply", "error"))
    def BeginPrepareSnapshot(self, set_path, snapshot_id, volume, options, reply, error):
        if self.enter("BeginPrepareSnapshot", reply, error):
            self.sets.setdefault(str(set_path), []).append((str(snapshot_id), str(volume)))
            reply()

    @dbus.service.method(IFACE, in_signature="o", async_callbacks=("reply", "error"))
    def EndPrepareSnapshots(self, set_path, reply, error):
        if self.enter("EndPrepareSnapshots", reply, error):
            reply()

    @dbus.service.method(IFACE, in_signature="o", async_callbacks=("reply", "error"))
    def PreCommitSnapshots(self, set_path, reply, error):
        if self.enter("PreCommitSnapshots", reply, error):
            reply()

    @dbus.service.method(IFACE, in_signature="o", async_callbacks=("reply", "error"))
    def CommitSnapshots(self, set_path, reply, error):
        if not self.enter("CommitSnapshots", reply, error):
            return
        try:
            for snapshot_id, volume in self.sets.get(str(set_path), []):
                self.note("commit %s frozen=%s" % (volume, "yes" if frozen(volume) else "no"))
                target = os.path.join(self.args.store, snapshot_id)
                shutil.copytree(volume, target, symlinks=True, ignore=shutil.ignore_patterns("lost+found"))
                self.made[snapshot_id] = target
        except OSError as e:
            error(Failed("copy failed: %s" % e))
            return
        reply()

    @dbus.service.method(IFACE, in_signature="o", out_signature="a{ss}", async_callbacks=("reply", "error"))
    def PostCommitSnapshots(self, set_path, reply, error):
        if not self.enter("PostCommitSnapshots", reply, error):
            return
        done = {s: self.made[s] for s, _ in self.sets.pop(str(set_path), []) if s in self.made}
        reply(dbus.Dictionary(done, signature="ss"))

    @dbus.service.method(IFACE, in_signature="o", async_callbacks=("reply", "error"))
    def AbortSnapshots(self, set_path, reply, error):
        self.note("AbortSnapshots")
        for snapshot_id, _ in self.sets.pop(str(set_path), []):
            shutil.rmtree(self.made.pop(snapshot_id, "/nonexistent"), ignore_errors=True)
        reply()

    @dbus.service.method(IFACE, in_signature="s", async_callbacks=("reply", "error"))
    def DeleteSnapshot(self, snapshot_id, reply, error):
        if not self.enter("DeleteSnapshot", reply, error):
            return
        # The daemon may have restarted since the copy was made: the store knows it by its id.
        target = self.made.pop(str(snapshot_id), os.path.join(self.args.store, str(snapshot_id)))
        shutil.rmtree(target, ignore_errors=True)
        reply()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="python-files")
    parser.add_argument("--store", required=True, help="where copies go (not on a copied volume)")
    parser.add_argument("--volume", action="append")
    parser.add_argument("--log")
    parser.add_argument("--fail")
    parser.add_argument("--hang")
    args = parser.parse_args()
    os.makedirs(args.store, exist_ok=True)

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    path = "/org/example/Provider"
    provider = Provider(bus, path, args)
    coordinator = dbus.Interface(bus.get_object(NAME, ROOT), NAME + ".Coordinator")
    registered = coordinator.RegisterProvider(path, {"name": args.name, "version": "1.0"})
    provider.note("registered %s" % registered)
    GLib.MainLoop().run()


if __name__ == "__main__":
    sys.exit(main())
