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
#endif
