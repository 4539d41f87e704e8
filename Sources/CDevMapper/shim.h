#ifndef SHADOWCOPY_CDEVMAPPER_SHIM_H
#define SHADOWCOPY_CDEVMAPPER_SHIM_H
// libdevmapper through pkg-config devmapper. Only the DeviceMapper module imports this.
#include <libdevmapper.h>
#endif
