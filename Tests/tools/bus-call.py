#!/usr/bin/python3
"""Calls one method of shadowcopyd for a test, as whichever user runs it, and prints one JSON
line: {"reply": [...]} or {"error": "<D-Bus error name>", "message": "..."}.

usage: bus-call.py [--interactive] PATH INTERFACE METHOD SIGNATURE JSON-ARGUMENTS
The bus is DBUS_SYSTEM_BUS_ADDRESS. a{sv} values take their D-Bus type from JSON (str: s,
bool: b, int: i).
"""
import json
import sys

import dbus
import dbus.lowlevel


def plain(value):
    if isinstance(value, (dbus.Dictionary, dict)):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (dbus.Array, dbus.Struct, list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, (dbus.Byte, dbus.Int16, dbus.Int32, dbus.Int64, dbus.UInt16, dbus.UInt32, dbus.UInt64)):
        return int(value)
    return str(value)


def main():
    args = sys.argv[1:]
    interactive = args[0] == "--interactive"
    if interactive:
        args = args[1:]
    path, interface, method, signature, arguments = args
    bus = dbus.SystemBus()
    message = dbus.lowlevel.MethodCallMessage("org.shadowcopy.ShadowCopy1", path, interface, method)
    message.set_allow_interactive_authorization(interactive)
    if signature:
        message.append(*json.loads(arguments), signature=signature)
    try:
        reply = bus.send_message_with_reply_and_block(message, 60000)
        print(json.dumps({"reply": plain(reply.get_args_list())}))
    except dbus.exceptions.DBusException as e:
        print(json.dumps({"error": e.get_dbus_name(), "message": e.get_dbus_message()}))


if __name__ == "__main__":
    main()
