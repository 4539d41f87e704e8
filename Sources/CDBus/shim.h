#ifndef SHADOWCOPY_CDBUS_SHIM_H
#define SHADOWCOPY_CDBUS_SHIM_H
// libdbus through pkg-config dbus-1. Only the DBus module imports this.
#include <dbus/dbus.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#endif
