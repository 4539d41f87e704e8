#!/usr/bin/python3
"""A shadowcopy writer in Python (python3-dbus): the contract is language-neutral.

It registers with the coordinator, answers every Writer event, and logs each event it gets,
one per line, to --log. For tests and demos it can also:
  --data FILE     append numbered records to FILE (fsync'd) except between Freeze and Thaw/Abort,
                  and log "frozen-after N" with the last record written before Freeze;
  --veto EVENT    refuse EVENT with Error.WriterRetryable;
  --hang EVENT    never answer EVENT (the coordinator's deadline must end it);
  --freeze-delay-ms N  answer Freeze only after N ms (a slow application);
  --freeze-until FILE  answer Freeze only once FILE exists (then remove it): a test holds the
                  freeze open exactly as long as it needs.
"""
import argparse
import os
import sys
import time

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

NAME = "org.shadowcopy.ShadowCopy1"
ROOT = "/org/shadowcopy/ShadowCopy1"
IFACE = NAME + ".Writer"
ERR = NAME + ".Error."


class Veto(dbus.DBusException):
    _dbus_error_name = ERR + "WriterRetryable"


class Writer(dbus.service.Object):
    def __init__(self, bus, path, args):
        super().__init__(bus, path)
        self.args = args
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.frozen = False
        self.count = 0
        self.data = open(args.data, "a", buffering=1) if args.data else None
        if self.data:
            GLib.timeout_add(5, self.append)

    def note(self, text):
        # Monotonic nanoseconds first, so logs of several writers can be put in one order.
        if self.log:
            self.log.write("%d %s\n" % (time.monotonic_ns(), text))

    def append(self):
        if not self.frozen:
            self.count += 1
            self.data.write("%d\n" % self.count)
            self.data.flush()
            os.fsync(self.data.fileno())
        return True

    def event(self, name, reply, error):
        self.note(name)
        if self.args.veto == name:
            error(Veto("%s refuses %s" % (self.args.name, name)))
            return False
        if self.args.hang == name:
            return False
        return True

    @dbus.service.method(IFACE, in_signature="", out_signature="a{sv}")
    def Identify(self):
        self.note("Identify")
        component = dbus.Dictionary({"logical-path": "", "name": self.args.name, "type": "file-group",
                                     "selectable": True, "paths": dbus.Array([self.args.data or "/"], "s")},
                                    signature="sv")
        return dbus.Dictionary({"components": dbus.Array([component], "a{sv}")}, signature="sv")

    def handle(self, name, reply, error):
        if not self.event(name, reply, error):
            return
        if name == "Freeze":
            self.frozen = True
            self.note("frozen-after %d" % self.count)
        if name in ("Thaw", "Abort"):
            self.frozen = False
        if name == "Freeze" and self.args.freeze_until:
            def released():
                if not os.path.exists(self.args.freeze_until):
                    return True
                os.unlink(self.args.freeze_until)
                reply()
                return False
            GLib.timeout_add(5, released)
            return
        if name == "Freeze" and self.args.freeze_delay_ms:
            GLib.timeout_add(self.args.freeze_delay_ms, lambda: reply() and False)
            return
        reply()

    def details(self, name, options):
        # What the coordinator says of the backup: its type and this writer's selected components.
        parts = ["%s%s" % (c.get("name", "?"), "" if "succeeded" not in c else ":" + ("ok" if c["succeeded"] else "failed"))
                 for c in options.get("components", [])]
        self.note("detail %s backup-type=%s components=%s" % (name, options.get("backup-type", "?"), ",".join(parts)))

    @dbus.service.method(IFACE, in_signature="oa{sv}", async_callbacks=("reply", "error"))
    def PrepareForBackup(self, set_path, options, reply, error):
        self.details("PrepareForBackup", options)
        self.handle("PrepareForBackup", reply, error)

    @dbus.service.method(IFACE, in_signature="oas", async_callbacks=("reply", "error"))
    def PrepareForSnapshot(self, set_path, volumes, reply, error):
        self.handle("PrepareForSnapshot", reply, error)

    @dbus.service.method(IFACE, in_signature="o", async_callbacks=("reply", "error"))
    def Freeze(self, set_path, reply, error):
        self.handle("Freeze", reply, error)

    @dbus.service.method(IFACE, in_signature="o", async_callbacks=("reply", "error"))
    def Thaw(self, set_path, reply, error):
        self.handle("Thaw", reply, error)

    @dbus.service.method(IFACE, in_signature="oa{ss}", async_callbacks=("reply", "error"))
    def PostSnapshot(self, set_path, devices, reply, error):
        self.handle("PostSnapshot", reply, error)

    @dbus.service.method(IFACE, in_signature="o", async_callbacks=("reply", "error"))
    def Abort(self, set_path, reply, error):
        self.handle("Abort", reply, error)

    @dbus.service.method(IFACE, in_signature="oa{sv}", async_callbacks=("reply", "error"))
    def BackupComplete(self, set_path, options, reply, error):
        self.details("BackupComplete", options)
        self.handle("BackupComplete", reply, error)

    @dbus.service.method(IFACE, in_signature="o", async_callbacks=("reply", "error"))
    def BackupShutdown(self, set_path, reply, error):
        self.handle("BackupShutdown", reply, error)

    @dbus.service.method(IFACE, in_signature="oa{sv}", async_callbacks=("reply", "error"))
    def PreRestore(self, set_path, options, reply, error):
        self.handle("PreRestore", reply, error)

    @dbus.service.method(IFACE, in_signature="oa{sv}", async_callbacks=("reply", "error"))
    def PostRestore(self, set_path, options, reply, error):
        self.handle("PostRestore", reply, error)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="python-writer")
    parser.add_argument("--level", default="front-end", choices=["front-end", "back-end", "system"])
    parser.add_argument("--freeze-timeout-ms", type=int)
    parser.add_argument("--log")
    parser.add_argument("--data")
    parser.add_argument("--veto")
    parser.add_argument("--hang")
    parser.add_argument("--freeze-delay-ms", type=int)
    parser.add_argument("--freeze-until")
    args = parser.parse_args()

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    path = "/org/example/Writer"
    writer = Writer(bus, path, args)
    options = {"name": args.name, "level": args.level}
    if args.freeze_timeout_ms:
        options["freeze-timeout-ms"] = dbus.UInt32(args.freeze_timeout_ms)
    coordinator = dbus.Interface(bus.get_object(NAME, ROOT), NAME + ".Coordinator")
    registered = coordinator.RegisterWriter(dbus.ObjectPath(path), dbus.Dictionary(options, signature="sv"))
    writer.note("registered " + str(registered))
    print(registered, flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    sys.exit(main())
