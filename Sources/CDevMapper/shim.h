#ifndef SHADOWCOPY_CDEVMAPPER_SHIM_H
#define SHADOWCOPY_CDEVMAPPER_SHIM_H
// libdevmapper through pkg-config devmapper. Only the DeviceMapper module imports this.
#include <libdevmapper.h>
#include <sys/sysmacros.h>

// struct dm_names ends in a flexible array, which Swift cannot reach: walk the list here.
static inline const char *cdm_names_name(const struct dm_names *names) { return names->name; }
static inline struct dm_names *cdm_names_next(struct dm_names *names) {
    return names->next ? (struct dm_names *)((char *)names + names->next) : NULL;
}
static inline unsigned cdm_major(uint64_t dev) { return major(dev); }
static inline unsigned cdm_minor(uint64_t dev) { return minor(dev); }

// Task types are an anonymous enum in libdevmapper.h; Swift sees them as plain constants, and
// these names keep the wrapper's switch readable.
static inline int cdm_task_create_kind(void) { return DM_DEVICE_CREATE; }
static inline int cdm_task_reload_kind(void) { return DM_DEVICE_RELOAD; }
static inline int cdm_task_remove_kind(void) { return DM_DEVICE_REMOVE; }
static inline int cdm_task_suspend_kind(void) { return DM_DEVICE_SUSPEND; }
static inline int cdm_task_resume_kind(void) { return DM_DEVICE_RESUME; }
static inline int cdm_task_info_kind(void) { return DM_DEVICE_INFO; }
static inline int cdm_task_table_kind(void) { return DM_DEVICE_TABLE; }
static inline int cdm_task_status_kind(void) { return DM_DEVICE_STATUS; }
static inline int cdm_task_message_kind(void) { return DM_DEVICE_TARGET_MSG; }
static inline int cdm_task_list_kind(void) { return DM_DEVICE_LIST; }
static inline int cdm_task_clear_kind(void) { return DM_DEVICE_CLEAR; }

// Loop devices for shadow storage files, set up by the daemon itself (no losetup at run time).
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>
#include <stdio.h>

// Attaches `file` to a free loop device with autoclear (it detaches itself once nothing holds
// it open: the dm device using it, or this process). Writes /dev/loopN into `path` and returns
// an open fd on it (the caller closes it once dm holds the device), or -errno.
static inline int cdm_loop_attach(const char *file, char *path, size_t path_len) {
    int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) return -errno;
    int backing = open(file, O_RDWR | O_CLOEXEC);
    if (backing < 0) { int e = errno; close(control); return -e; }
    for (int attempt = 0; attempt < 16; attempt++) {
        int n = ioctl(control, LOOP_CTL_GET_FREE);
        if (n < 0) break;
        snprintf(path, path_len, "/dev/loop%d", n);
        int loop = open(path, O_RDWR | O_CLOEXEC);
        if (loop < 0) continue;
        struct loop_config config;
        memset(&config, 0, sizeof(config));
        config.fd = backing;
        config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        strncpy((char *)config.info.lo_file_name, file, LO_NAME_SIZE - 1);
        if (ioctl(loop, LOOP_CONFIGURE, &config) == 0) { close(backing); close(control); return loop; }
        int e = errno;
        close(loop);
        if (e != EBUSY) { close(backing); close(control); return -e; }
        // Someone took it between GET_FREE and CONFIGURE: ask again.
    }
    close(backing);
    close(control);
    return -EBUSY;
}
// Grows the file behind loop device `path` to `bytes` and tells the loop device (and so the
// block layer, and any dm target on it) its new size. Returns 0 or -errno.
static inline int cdm_loop_grow(const char *path, const char *file, uint64_t bytes) {
    if (truncate(file, (off_t)bytes) != 0) return -errno;
    int loop = open(path, O_RDONLY | O_CLOEXEC);
    if (loop < 0) return -errno;
    int rc = ioctl(loop, LOOP_SET_CAPACITY, 0);
    int e = errno;
    close(loop);
    return rc == 0 ? 0 : -e;
}

#endif
