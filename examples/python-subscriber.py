#!/usr/bin/python3
"""A light subscriber: an application that only listens to the coordinator's broadcast signals
(PrepareForSnapshot, Freeze, Thaw, SnapshotSetDone) to pause its own work around a copy. It is
told, never asked: it cannot veto or delay the copy; a Writer can (examples/python-writer.py).

It logs each signal, one per line (monotonic nanoseconds first), to --log or standard output.
"""
import argparse
import sys
import time

import dbus
import dbus.mainloop.glib
from gi.repository import GLib

NAME = "org.shadowcopy.ShadowCopy1"
IFACE = NAME + ".Coordinator"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log")
    parser.add_argument("--name", default="subscriber")
    args = parser.parse_args()
    out = open(args.log, "a", buffering=1) if args.log else sys.stdout

    def note(text):
        out.write("%d %s\n" % (time.monotonic_ns(), text))
        out.flush()

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()

    def on(signal):
        def handler(set_path, *rest):
            detail = " ".join(str(x) if not isinstance(x, dbus.Array) else ",".join(map(str, x)) for x in rest)
            note("%s %s %s" % (signal, set_path, detail))
        bus.add_signal_receiver(handler, signal_name=signal, dbus_interface=IFACE, bus_name=NAME)

    for signal in ("PrepareForSnapshot", "Freeze", "Thaw", "SnapshotSetDone"):
        on(signal)
    # The match rules are in place once this round trip is answered: say so for whoever waits.
    bus.get_object("org.freedesktop.DBus", "/org/freedesktop/DBus").GetId(dbus_interface="org.freedesktop.DBus")
    note("registered %s" % args.name)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
